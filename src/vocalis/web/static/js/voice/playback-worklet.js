// AudioWorklet: plays the agent's speech (Float32 chunks queued by the page) and counts what
// actually reached the output: samples played, the loudest one, and what is still queued.
// "clear" drops the queue at once (barge-in).
class Playback extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0;
    this.queued = 0;
    this.played = 0;
    this.audible = 0;
    this.peak = 0;
    this.sinceReport = 0;
    this.port.onmessage = (e) => {
      if (e.data === "clear") {
        this.queue = [];
        this.offset = 0;
        this.queued = 0;
        this.report();
      } else {
        this.queue.push(e.data);
        this.queued += e.data.length;
      }
    };
  }

  report() {
    this.port.postMessage({ played: this.played, audible: this.audible, peak: this.peak, queued: this.queued });
    this.sinceReport = 0;
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    let i = 0;
    while (i < out.length && this.queue.length) {
      const head = this.queue[0];
      const n = Math.min(out.length - i, head.length - this.offset);
      for (let k = 0; k < n; k++) {
        const s = head[this.offset + k];
        out[i + k] = s;
        const a = s < 0 ? -s : s;
        if (a > 0.01) this.audible++;
        if (a > this.peak) this.peak = a;
      }
      i += n;
      this.offset += n;
      this.played += n;
      this.queued -= n;
      if (this.offset === head.length) { this.queue.shift(); this.offset = 0; }
    }
    for (; i < out.length; i++) out[i] = 0;
    this.sinceReport += out.length;
    if (this.sinceReport >= 2400) this.report(); // ~10 reports a second
    return true;
  }
}

registerProcessor("vocalis-playback", Playback);
