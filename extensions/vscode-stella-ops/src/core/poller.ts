// Background refresh: one timer, restarted after each refresh, with the service's backoff while a backend is
// offline (bounded by the configured interval and a 5 min cap, see DataService.nextDelayMs).
import type { DataService } from './service';

export class Poller {
  private timer?: NodeJS.Timeout;
  private disposed = false;

  constructor(private readonly service: Pick<DataService, 'refresh' | 'nextDelayMs'>, private readonly intervalMs: () => number) {}

  /** First load: cached data is shown (stale) immediately; the fetch runs in the background, then polling starts. */
  start(): void {
    void this.service.refresh().finally(() => this.schedule());
  }

  /** (Re)starts the wait before the next refresh; the previous timer, if any, is dropped. */
  schedule(): void {
    if (this.disposed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.service.refresh().finally(() => this.schedule());
    }, this.service.nextDelayMs(this.intervalMs()));
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
