// The page's one EventSource: every live value arrives here and is handed out by hub channel.
//
// The server names each SSE event after its hub channel (`wavemeter/3`, `lock/3`,
// `logger/chamber`), so a handler is registered per channel name. The browser
// reconnects by itself and sends Last-Event-ID, and the server replays what was
// missed; if the server refused the stream outright (EventSource gives up then),
// a new one is opened with the last id in the query. `state` is "connecting",
// "live" or "reconnecting"; `onOpen` handlers run on every (re)connection.

const REOPEN_AFTER_MS = 3000;

export class Stream {
  constructor(url) {
    this.url = url;
    this.state = "connecting";
    this.lastEventId = null;
    this.handlers = new Map();
    this.stateListeners = [];
    this.openListeners = [];
    this.source = null;
    this.everOpen = false;
    this.dispatch = (event) => this.deliver(event);
  }

  /** Call `handler(data)` with the JSON data of every event of hub channel `channel`. */
  on(channel, handler) {
    if (!this.handlers.has(channel)) {
      this.handlers.set(channel, []);
      this.source?.addEventListener(channel, this.dispatch);
    }
    this.handlers.get(channel).push(handler);
  }

  onState(listener) {
    this.stateListeners.push(listener);
    listener(this.state);
  }

  /** Call `listener(reconnected)` whenever the stream opens (reconnected: not the first time). */
  onOpen(listener) {
    this.openListeners.push(listener);
  }

  open() {
    const url = this.lastEventId === null
      ? this.url : `${this.url}?last_event_id=${encodeURIComponent(this.lastEventId)}`;
    const source = new EventSource(url);
    this.source = source;
    for (const channel of this.handlers.keys()) source.addEventListener(channel, this.dispatch);
    source.onopen = () => {
      for (const listener of this.openListeners) listener(this.everOpen);
      this.everOpen = true;
      this.setState("live");
    };
    source.onerror = () => {
      this.setState("reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(() => this.open(), REOPEN_AFTER_MS);
      }
    };
  }

  deliver(event) {
    if (event.lastEventId) this.lastEventId = event.lastEventId;
    let data;
    try {
      data = JSON.parse(event.data);
    } catch (error) {
      console.warn(`stream: ${event.type}: data is not JSON`, error);
      return;
    }
    for (const handler of this.handlers.get(event.type) ?? []) handler(data);
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    for (const listener of this.stateListeners) listener(state);
  }
}
