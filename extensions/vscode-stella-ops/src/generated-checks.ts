// Compile-time contract checks: the hand-written domain types (src/core/types.ts) must stay assignable
// from the types generated out of the OpenAPI documents. A field renamed or retyped there breaks `tsc`.
import type { components as Orch } from './generated/orchestrator';
import type { components as Daemon } from './generated/daemon';
import type { Environment, HealthCheckResult, Integration, IntegrationCreate, IntegrationStatus, Promotion, PromotionRequest, Release } from './core/types';

type Assert<T extends true> = T;
type Extends<A, B> = [A] extends [B] ? true : false;

export type _Release = Assert<Extends<Orch['schemas']['Release'], Release>>;
export type _Environment = Assert<Extends<Orch['schemas']['Environment'], Environment>>;
export type _Promotion = Assert<Extends<Orch['schemas']['Promotion'], Promotion>>;
export type _PromotionRequest = Assert<Extends<PromotionRequest, Orch['schemas']['PromotionRequest']>>;

export type _Integration = Assert<Extends<Daemon['schemas']['Integration'], Integration>>;
export type _IntegrationStatus = Assert<Extends<Daemon['schemas']['Integration']['status'], IntegrationStatus>>;
export type _HealthCheck = Assert<Extends<Daemon['schemas']['HealthCheckResult'], HealthCheckResult>>;
export type _ListPage = Assert<Extends<Daemon['schemas']['IntegrationPage'], { items: Integration[]; nextCursor?: string | null }>>;
// The document has one registration per provider type, chosen by `type`, each with that provider's
// `config`. `type` names any registered connector: the checked-in document enumerates the built-in
// ones, a hub's own document adds its plugins', so the extension keeps it a string and `config` a
// free-form object (the hub checks it against the provider's schema).
type DaemonCreate = Daemon['schemas']['IntegrationCreate'];
export type _Create = Assert<Extends<Omit<IntegrationCreate, 'type' | 'config'>, Omit<Daemon['schemas']['InmemoryIntegrationCreate'], 'type' | 'config'>>>;
export type _CreateType = Assert<Extends<DaemonCreate['type'], IntegrationCreate['type']>>;
export type _CreateConfig = Assert<Extends<DaemonCreate['config'], IntegrationCreate['config']>>;
