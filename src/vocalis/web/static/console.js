// The console's entry module: sign-in, navigation (hash routes) and the screens.
// Every screen calls the same public API an integrator uses (/v1/conversations, /v1/agents…).
import { api, session } from "./js/api.js";
import { h, field, say } from "./js/dom.js";
import { agentsScreen } from "./js/screens/agents.js";
import { knowledgeScreen } from "./js/screens/knowledge.js";
import { playgroundScreen } from "./js/screens/playground.js";
import { conversationsScreen } from "./js/screens/conversations.js";
import { webhooksScreen, keysScreen, deadLettersScreen, flagsScreen, phoneNumbersScreen } from "./js/screens/admin.js";
import { overviewScreen } from "./js/screens/overview.js";

const SCREENS = {
  overview: overviewScreen,
  agents: agentsScreen,
  knowledge: knowledgeScreen,
  playground: playgroundScreen,
  conversations: conversationsScreen,
  "phone-numbers": phoneNumbersScreen,
  webhooks: webhooksScreen,
  keys: keysScreen,
  "dead-letters": deadLettersScreen,
  flags: flagsScreen,
};

const view = document.getElementById("view");
let cleanup = null;

function signInScreen() {
  const input = h("input", { type: "password", testid: "api-key-input", autocomplete: "off", required: true, placeholder: "vk_…" });
  const form = h("form", { class: "sign-in card", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title", text: "Sign in to Vocalis" }),
    h("p", { text: "Paste an API key. `vocalis run` prints the first one (also in .data/api-key)." }),
    field("API key", input),
    h("button", { type: "submit", testid: "sign-in", text: "Sign in" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    try {
      await api("/v1/org", { key });
      session.key = key;
      if (location.hash === "#/agents") await route();
      else location.hash = "#/agents";
    } catch (err) {
      say(`Sign-in failed: ${err.message}`, "error");
    }
  });
  return form;
}

async function route() {
  if (cleanup) { try { cleanup(); } catch (_) { /* the old screen is gone anyway */ } cleanup = null; }
  const signedIn = Boolean(session.key);
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("sign-out").hidden = !signedIn;
  if (!signedIn) {
    document.getElementById("org").textContent = "";
    view.replaceChildren(signInScreen());
    view.querySelector("input").focus();
    return;
  }
  const [name, ...rest] = (location.hash.replace(/^#\/?/, "") || "agents").split("/");
  const screen = SCREENS[name] || SCREENS.agents;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    const org = await api("/v1/org");
    document.getElementById("org").textContent = org.name;
  } catch (err) {
    if (err.status === 401) { session.key = ""; return route(); }
  }
  const host = h("div", { class: "screen", dataset: { screen: name } });
  view.replaceChildren(host);
  // Focus that was inside the old screen (the sign-in form, typically) went with it: the new
  // screen takes it, so the next Tab continues from the content, not from wherever the
  // browser's navigation starting point was left.
  if (!document.activeElement || document.activeElement === document.body) view.focus({ preventScroll: true });
  try {
    cleanup = (await screen(host, rest)) || null;
  } catch (err) {
    say(err.message, "error");
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  session.key = "";
  if (location.hash && location.hash !== "#") location.hash = "";
  else route();
});
// The skip link focuses the content without touching the hash (the hash is the route).
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  view.focus();
});
window.addEventListener("hashchange", route);
route();
