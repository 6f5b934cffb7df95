// A voice session in the browser: microphone -> WS /v1/realtime (OpenAI's protocol) with a
// short-lived client secret; the agent's speech played through an AudioWorklet; barge-in
// clears the playback and tells the server how much of the reply was heard.
import { api } from "../api.js";

const RATE = 24000;
const BASE = "/console/js/voice/";

function base64ToFloat32(b64) {
  const bin = atob(b64);
  const count = bin.length >> 1;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    let v = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
    if (v >= 0x8000) v -= 0x10000;
    out[i] = v / 0x8000;
  }
  return out;
}

export class VoiceSession {
  /** `onEvent(event)` gets every server event; `onStats(stats)` the playback counters. */
  constructor(agentId, { onEvent, onStats, onClose }) {
    this.agentId = agentId;
    this.onEvent = onEvent;
    this.onStats = onStats || (() => {});
    this.onClose = onClose || (() => {});
    this.stats = { played: 0, audible: 0, peak: 0, queued: 0 };
    this.enqueued = 0; // samples handed to the player, ever
    this.playing = null; // { itemId, startSample }
  }

  async start() {
    const secret = await api("/v1/realtime/client_secrets", {
      method: "POST",
      json: {
        expires_after: { anchor: "created_at", seconds: 600 },
        session: { model: this.agentId, audio: { input: { format: { type: "audio/pcm", rate: RATE } }, output: { format: { type: "audio/pcm", rate: RATE } } } },
      },
    });
    this.context = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
    await this.context.audioWorklet.addModule(`${BASE}capture-worklet.js`);
    await this.context.audioWorklet.addModule(`${BASE}playback-worklet.js`);
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
    this.player = new AudioWorkletNode(this.context, "vocalis-playback", { numberOfInputs: 0, outputChannelCount: [1] });
    this.analyser = this.context.createAnalyser();
    this.analyser.fftSize = 512;
    this.player.connect(this.analyser).connect(this.context.destination);
    this.player.port.onmessage = (e) => { this.stats = e.data; this.onStats(this.stats); };
    this.capture = new AudioWorkletNode(this.context, "vocalis-capture", { numberOfOutputs: 1, outputChannelCount: [1] });
    const mute = this.context.createGain();
    mute.gain.value = 0; // the capture node must be pulled by the graph; nothing is heard
    this.source = this.context.createMediaStreamSource(this.stream);
    this.source.connect(this.capture).connect(mute).connect(this.context.destination);
    if (this.context.state !== "running") await this.context.resume();

    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/v1/realtime?model=${encodeURIComponent(this.agentId)}&token=${encodeURIComponent(secret.value)}`;
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => {
      this.ws.addEventListener("open", resolve, { once: true });
      this.ws.addEventListener("error", () => reject(new Error("The realtime connection failed.")), { once: true });
    });
    this.capture.port.onmessage = (e) => { if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(e.data); };
    this.ws.addEventListener("message", (e) => this.handle(JSON.parse(e.data)));
    this.ws.addEventListener("close", (e) => { this.teardown(); this.onClose(e); });
  }

  handle(event) {
    if (event.type === "response.output_audio.delta") {
      const samples = base64ToFloat32(event.delta);
      if (!this.playing || this.playing.itemId !== event.item_id) this.playing = { itemId: event.item_id, startSample: this.enqueued };
      this.enqueued += samples.length;
      this.player.port.postMessage(samples, [samples.buffer]);
    } else if (event.type === "input_audio_buffer.speech_started") {
      this.bargeIn();
    }
    this.onEvent(event);
  }

  /** The user spoke over the agent: stop its speech now; say how much was heard. */
  bargeIn() {
    if (!this.playing || this.stats.queued <= 0) return;
    const heardSamples = Math.max(0, this.stats.played - this.playing.startSample);
    this.player.port.postMessage("clear");
    this.enqueued = this.stats.played;
    this.send({ type: "conversation.item.truncate", item_id: this.playing.itemId, content_index: 0, audio_end_ms: Math.round((1000 * heardSamples) / RATE) });
    this.playing = null;
  }

  send(event) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(event));
  }

  /** The output level (0–1) right now, from the analyser after the player. */
  level() {
    if (!this.analyser) return 0;
    const data = new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(data);
    let peak = 0;
    for (const v of data) peak = Math.max(peak, Math.abs(v));
    return peak;
  }

  teardown() {
    if (this.capture) this.capture.port.postMessage("stop");
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    if (this.context && this.context.state !== "closed") this.context.close();
    this.stream = null;
  }

  stop() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "user stopped");
    this.teardown();
  }
}
