import type { Backends } from '../../core/backends';
import type { LiveHealth } from '../../core/liveHealth';
import type { Poller } from '../../core/poller';
import type { DataService } from '../../core/service';
import type { Log } from '../log';

/** What every command handler is given. */
export interface CommandDeps {
  backends: Backends;
  service: DataService;
  poller: Poller;
  /** The hub's event stream (absent in tests that do not need it). */
  live?: LiveHealth;
  log: Log;
}
