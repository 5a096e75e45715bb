// Server-sent events parsing (WHATWG HTML "event stream interpretation"), fed with chunks as they arrive.
// No VS Code or network dependency: the stream client feeds it, the shared fixtures test it.

export interface SseMessage {
  /** The last event ID at dispatch: this message's `id:`, or the one before it. */
  id: string | undefined;
  /** `event:` field, `message` by default. */
  event: string;
  data: string;
}

/** Longest line kept (1 MiB): a longer one is dropped with the message it belongs to. */
const MAX_LINE = 1 << 20;

/** One parser per connection (its partial line and message belong to that connection); `retryMs` is the stream's last `retry:`. */
export class SseParser {
  private partial = '';
  private data: string[] = [];
  private eventType = '';
  private idBuffer: string | undefined;
  private lastWasCR = false;
  private started = false;
  private broken = false;
  /** The last `retry:` value, in milliseconds. */
  retryMs?: number;

  constructor(lastEventId?: string) {
    this.idBuffer = lastEventId;
  }

  /** Parses a chunk; returns the messages it completed. A chunk may end anywhere, even between `\r` and `\n`. */
  push(chunk: string): SseMessage[] {
    let text = chunk;
    if (!this.started && text.length) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.lastWasCR && text.startsWith('\n')) text = text.slice(1);
    if (text.length) this.lastWasCR = false;
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.partial + text.slice(start, i);
      this.partial = '';
      this.line(line, out);
      if (c === 13) {
        if (i + 1 < text.length) {
          if (text.charCodeAt(i + 1) === 10) i++;
        } else this.lastWasCR = true;
      }
      start = i + 1;
    }
    this.partial += text.slice(start);
    if (this.partial.length > MAX_LINE) {
      this.partial = '';
      this.broken = true;
    }
    return out;
  }

  private line(line: string, out: SseMessage[]) {
    if (line === '') return this.dispatch(out);
    if (line.charCodeAt(0) === 58 /* : */) return; // comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.eventType = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.idBuffer = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  private dispatch(out: SseMessage[]) {
    const data = this.data;
    const eventType = this.eventType;
    const broken = this.broken;
    this.data = [];
    this.eventType = '';
    this.broken = false;
    if (!data.length || broken) return;
    out.push({ id: this.idBuffer, event: eventType || 'message', data: data.join('\n') });
  }
}
