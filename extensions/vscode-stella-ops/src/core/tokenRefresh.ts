// Proactive token refresh: a timer at the session's refresh time (80 % of the token lifetime, see
// TokenManager.refreshDueAt), set again whenever the session changes.
import type { TokenManager } from './auth';
import { errMsg } from './service';

export class TokenRefreshTimer {
  private timer?: NodeJS.Timeout;
  private readonly sub: { dispose(): void };

  constructor(private readonly tokens: Pick<TokenManager, 'refreshDueAt' | 'refresh' | 'onDidChange'>, private readonly log: (m: string) => void) {
    this.sub = tokens.onDidChange(() => this.schedule());
    this.schedule();
  }

  private schedule() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const due = this.tokens.refreshDueAt();
    if (due === undefined) return;
    this.timer = setTimeout(() => {
      this.tokens.refresh().catch((e) => this.log(`background token refresh failed: ${errMsg(e)}`));
    }, Math.max(1000, due - Date.now()));
    this.timer.unref?.();
  }

  dispose() {
    this.sub.dispose();
    if (this.timer) clearTimeout(this.timer);
  }
}
