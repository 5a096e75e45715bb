import type { Backends } from '../../core/backends';
import type { Poller } from '../../core/poller';
import type { DataService } from '../../core/service';
import type { Log } from '../log';

/** What every command handler is given. */
export interface CommandDeps {
  backends: Backends;
  service: DataService;
  poller: Poller;
  log: Log;
}
