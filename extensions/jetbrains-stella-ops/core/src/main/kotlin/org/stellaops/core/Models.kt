package org.stellaops.core

import com.fasterxml.jackson.databind.JsonNode
import com.fasterxml.jackson.databind.node.ObjectNode

/** `{id, name, deployedAt}` as embedded in an environment. */
data class CurrentRelease(val id: String, val name: String?, val deployedAt: String?) {
    fun toJson(): ObjectNode = Json.obj("id" to id, "name" to name, "deployedAt" to deployedAt)

    companion object {
        fun from(n: JsonNode): CurrentRelease = CurrentRelease(n.str("id") ?: "", n.str("name"), n.str("deployedAt"))
    }
}

data class Release(
    val id: String,
    val name: String,
    val version: String?,
    val digest: String?,
    val status: String?,
    val createdAt: String?,
) {
    fun toJson(): ObjectNode = Json.obj(
        "id" to id, "name" to name, "version" to version, "digest" to digest, "status" to status, "createdAt" to createdAt,
    )

    companion object {
        fun from(n: JsonNode): Release = Release(
            id = n.str("id") ?: "",
            name = n.str("name") ?: n.str("id") ?: "",
            version = n.str("version"),
            digest = n.str("digest"),
            status = n.str("status"),
            createdAt = n.str("createdAt"),
        )
    }
}

data class Environment(
    val id: String,
    val name: String,
    val displayName: String?,
    val orderIndex: Int?,
    val isProduction: Boolean,
    val requiredApprovals: Int?,
    val requireSeparationOfDuties: Boolean,
    val currentRelease: CurrentRelease?,
) {
    fun toJson(): ObjectNode = Json.obj(
        "id" to id, "name" to name, "displayName" to displayName, "orderIndex" to orderIndex,
        "isProduction" to isProduction, "requiredApprovals" to requiredApprovals,
        "requireSeparationOfDuties" to requireSeparationOfDuties, "currentRelease" to currentRelease?.toJson(),
    )

    companion object {
        fun from(n: JsonNode): Environment = Environment(
            id = n.str("id") ?: n.str("name") ?: "",
            name = n.str("name") ?: n.str("id") ?: "",
            displayName = n.str("displayName"),
            orderIndex = n.int("orderIndex"),
            isProduction = n.bool("isProduction") ?: false,
            requiredApprovals = n.int("requiredApprovals"),
            requireSeparationOfDuties = n.bool("requireSeparationOfDuties") ?: n.bool("requireSod") ?: false,
            currentRelease = n.node("currentRelease")?.takeIf { it.isObject }?.let(CurrentRelease::from),
        )
    }
}

/** A promotion (shown in the Deployments tab). Status flow: pending → awaiting_approval → approved → deploying → deployed. */
data class Promotion(
    val id: String,
    val releaseId: String?,
    val releaseName: String?,
    val sourceEnvironmentId: String?,
    val sourceEnvironmentName: String?,
    val targetEnvironmentId: String?,
    val targetEnvironmentName: String?,
    val status: String,
    val requestedBy: String?,
    val requestedAt: String?,
    val reason: String?,
) {
    val isTerminal: Boolean get() = status in TERMINAL

    fun toJson(): ObjectNode = Json.obj(
        "id" to id, "releaseId" to releaseId, "releaseName" to releaseName,
        "sourceEnvironmentId" to sourceEnvironmentId, "sourceEnvironmentName" to sourceEnvironmentName,
        "targetEnvironmentId" to targetEnvironmentId, "targetEnvironmentName" to targetEnvironmentName,
        "status" to status, "requestedBy" to requestedBy, "requestedAt" to requestedAt, "reason" to reason,
    )

    companion object {
        val TERMINAL = setOf("deployed", "rejected", "cancelled", "failed", "rolled_back")

        fun from(n: JsonNode): Promotion = Promotion(
            id = n.str("id") ?: "",
            releaseId = n.str("releaseId"),
            releaseName = n.str("releaseName"),
            sourceEnvironmentId = n.str("sourceEnvironmentId"),
            sourceEnvironmentName = n.str("sourceEnvironmentName"),
            targetEnvironmentId = n.str("targetEnvironmentId"),
            targetEnvironmentName = n.str("targetEnvironmentName"),
            status = n.str("status") ?: "pending",
            requestedBy = n.str("requestedBy"),
            requestedAt = n.str("requestedAt"),
            reason = n.str("reason"),
        )
    }
}

/** Health status of an integration in this daemon's catalog. */
enum class HealthStatus(val wire: String) {
    UNKNOWN("unknown"), HEALTHY("healthy"), DEGRADED("degraded"), UNHEALTHY("unhealthy"), PAUSED("paused"), ERROR("error");

    /** Counts as a failure in the status bar ("✗"). */
    val isFailing: Boolean get() = this == UNHEALTHY || this == ERROR

    companion object {
        fun of(s: String?): HealthStatus = entries.firstOrNull { it.wire == s?.lowercase() } ?: UNKNOWN
    }
}

data class Integration(
    val id: String,
    val tenantId: String?,
    val type: String,
    val name: String,
    val config: JsonNode,
    val authRef: String?,
    val status: HealthStatus,
    val statusReason: String?,
    val lastCheckedAt: String?,
    val version: Long?,
    val createdAt: String?,
    val updatedAt: String?,
    /** Scheduled checks are paused. */
    val monitoringPaused: Boolean? = null,
    /** The integration's own check interval; the daemon's default when null. */
    val checkIntervalSeconds: Long? = null,
) {
    fun toJson(): ObjectNode = Json.obj(
        "id" to id, "tenantId" to tenantId, "type" to type, "name" to name, "config" to config,
        "authRef" to authRef, "status" to status.wire, "statusReason" to statusReason,
        "lastCheckedAt" to lastCheckedAt, "monitoringPaused" to monitoringPaused,
        "checkIntervalSeconds" to checkIntervalSeconds, "version" to version, "createdAt" to createdAt,
        "updatedAt" to updatedAt,
    )

    companion object {
        fun from(n: JsonNode): Integration = Integration(
            id = n.str("id") ?: "",
            tenantId = n.str("tenantId"),
            type = n.str("type") ?: "",
            name = n.str("name") ?: "",
            config = n.node("config") ?: Json.obj(),
            authRef = n.str("authRef"),
            status = HealthStatus.of(n.str("status")),
            statusReason = n.str("statusReason"),
            lastCheckedAt = n.str("lastCheckedAt"),
            monitoringPaused = n.get("monitoringPaused")?.takeIf { it.isBoolean }?.asBoolean(),
            checkIntervalSeconds = n.long("checkIntervalSeconds"),
            version = n.long("version"),
            createdAt = n.str("createdAt"),
            updatedAt = n.str("updatedAt"),
        )
    }
}

/** Result of `POST /api/v1/integrations/{id}/health-check`; [supported] is false when the daemon answered 501. */
data class HealthCheckResult(
    val supported: Boolean,
    val status: HealthStatus,
    val reason: String?,
    val message: String?,
    val latencyMs: Long?,
    val checkedAt: String?,
) {
    companion object {
        fun from(n: JsonNode): HealthCheckResult = HealthCheckResult(
            supported = true,
            status = HealthStatus.of(n.str("status")),
            reason = n.str("reason"),
            message = n.str("message"),
            latencyMs = n.long("latencyMs"),
            checkedAt = n.str("checkedAt"),
        )
    }
}

data class Page<T>(val items: List<T>, val nextCursor: String?)

/** Counts for the status bar: "Stella ✓ 12 ✗ 1". */
data class HealthSummary(val healthy: Int, val failing: Int, val degraded: Int, val other: Int) {
    val total: Int get() = healthy + failing + degraded + other

    companion object {
        fun of(items: List<Integration>): HealthSummary = HealthSummary(
            healthy = items.count { it.status == HealthStatus.HEALTHY },
            failing = items.count { it.status.isFailing },
            degraded = items.count { it.status == HealthStatus.DEGRADED },
            other = items.count { it.status == HealthStatus.UNKNOWN || it.status == HealthStatus.PAUSED },
        )
    }
}
