// Domain types used by the views. Orchestrator types mirror extensions/contracts/orchestrator-authority.openapi.yaml;
// integration types mirror the daemon's openapi.json. src/generated-checks.ts makes the build fail when
// the generated types (npm run gen) stop matching these.

export type ReleaseStatus = 'draft' | 'ready' | 'deprecated';

export interface ComponentVersion {
  name: string;
  image?: string;
  tag?: string;
  digest: string;
}

export interface Release {
  id: string;
  name: string;
  project?: string;
  version: string;
  digest?: string | null;
  status: ReleaseStatus;
  components?: ComponentVersion[];
  createdAt: string;
}

export interface CurrentRelease {
  id: string;
  name: string;
  version?: string;
  deployedAt?: string;
}

export interface Environment {
  id: string;
  name: string;
  displayName: string;
  orderIndex: number;
  isProduction?: boolean;
  requiredApprovals?: number;
  requireSeparationOfDuties?: boolean;
  currentRelease?: CurrentRelease | null;
}

export type PromotionStatus = 'pending' | 'awaiting_approval' | 'approved' | 'deploying' | 'deployed' | 'rejected' | 'cancelled' | 'failed' | 'rolled_back';

export interface PromotionRequest {
  releaseId: string;
  targetEnvironmentId: string;
  reason: string;
  ticket?: string;
}

export interface Promotion {
  id: string;
  releaseId: string;
  releaseName: string;
  sourceEnvironmentId?: string | null;
  sourceEnvironmentName?: string | null;
  targetEnvironmentId: string;
  targetEnvironmentName: string;
  status: PromotionStatus;
  requestedBy: string;
  requestedAt: string;
  reason: string;
  ticket?: string | null;
}

export type IntegrationStatus = 'unknown' | 'healthy' | 'degraded' | 'unhealthy' | 'paused' | 'error';

export interface Integration {
  id: string;
  tenantId: string;
  type: string;
  name: string;
  config: unknown;
  authRef?: string | null;
  status: IntegrationStatus;
  statusReason?: string | null;
  lastCheckedAt?: string | null;
  version: number;
  createdAt: string;
  updatedAt: string;
}

export interface HealthCheckResult {
  status: IntegrationStatus | string;
  reason?: string | null;
  message?: string | null;
  latencyMs?: number | null;
  checkedAt?: string | null;
}

export interface IntegrationCreate {
  /** A registered connector's type: the built-in ones and the hub's plugins'. */
  type: string;
  name: string;
  config?: Record<string, unknown>;
  authRef?: string;
}
