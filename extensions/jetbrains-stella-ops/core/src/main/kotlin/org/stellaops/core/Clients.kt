package org.stellaops.core

import com.fasterxml.jackson.databind.JsonNode
import java.net.URI
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CompletionException

/** JSON over HTTP with a bearer token; a 401 invalidates a renewable token and retries once. */
open class AuthedJsonApi(val baseUrl: URI, protected val http: HttpTransport, protected val bearer: BearerProvider) {
    fun request(
        method: String,
        path: String,
        body: JsonNode? = null,
        headers: Map<String, String> = emptyMap(),
        cancellation: Cancellation? = null,
        retryOn401: Boolean = true,
        auth: BearerProvider = bearer,
    ): CompletableFuture<HttpResult> =
        auth.bearer(cancellation).thenCompose { token ->
            http.send(
                method, baseUrl.resolvePath(path),
                headers = headers + ("Authorization" to "Bearer $token"),
                body = body?.let(Json::write),
                contentType = if (body != null) "application/json" else null,
                cancellation = cancellation,
            )
        }.thenCompose { r ->
            if (r.status == 401 && retryOn401 && auth.renewable) {
                auth.invalidate()
                request(method, path, body, headers, cancellation, retryOn401 = false, auth = auth)
            } else CompletableFuture.completedFuture(r)
        }

    /** Like [request] but any non-2xx answer fails the future with [ApiException]. */
    fun json(
        method: String, path: String, body: JsonNode? = null, headers: Map<String, String> = emptyMap(),
        cancellation: Cancellation? = null, auth: BearerProvider = bearer,
    ): CompletableFuture<JsonNode> =
        request(method, path, body, headers, cancellation, auth = auth).thenApply { r ->
            if (!r.ok) throw CompletionException(HttpTransport.error(r))
            r.json()
        }
}

/**
 * Orchestrator API (`/api/v1`). Responses come in three shapes in the upstream docs — a bare array,
 * the `{success, data, meta}` envelope, and `{data, meta:{page,totalCount}}` — and all are accepted.
 */
class OrchestratorClient(baseUrl: URI, http: HttpTransport, bearer: BearerProvider) : AuthedJsonApi(baseUrl, http, bearer) {

    /** Releases, newest first; [project] filters (the `project:` of stella.yaml). */
    fun releases(project: String? = null, cancellation: Cancellation? = null): CompletableFuture<List<Release>> =
        json("GET", "/api/v1/releases${HttpTransport.query("project" to project)}", cancellation = cancellation).thenApply { items(it).map(Release::from) }

    fun environments(cancellation: Cancellation? = null): CompletableFuture<List<Environment>> =
        json("GET", "/api/v1/environments${HttpTransport.query("includeState" to true)}", cancellation = cancellation)
            .thenApply { items(it).map(Environment::from).sortedWith(compareBy(nullsLast()) { e: Environment -> e.orderIndex }) }

    fun promotions(status: String? = null, releaseId: String? = null, environmentId: String? = null, cancellation: Cancellation? = null): CompletableFuture<List<Promotion>> =
        json("GET", "/api/v1/promotions${HttpTransport.query("status" to status, "releaseId" to releaseId, "environmentId" to environmentId)}", cancellation = cancellation)
            .thenApply { items(it).map(Promotion::from) }

    fun promotion(id: String, cancellation: Cancellation? = null): CompletableFuture<Promotion> =
        json("GET", "/api/v1/promotions/${enc(id)}", cancellation = cancellation).thenApply { Promotion.from(unwrap(it)) }

    /**
     * `POST /api/v1/promotions`; the reason (and ticket, if any) is also sent as `X-Stella-Reason`/`X-Stella-Ticket`.
     * Promotions need the `orch:operate` scope, so callers pass [auth] from [TokenManager.operatorBearer].
     */
    fun promote(
        releaseId: String, targetEnvironmentId: String, reason: String, ticket: String? = null,
        auth: BearerProvider = bearer, cancellation: Cancellation? = null,
    ): CompletableFuture<Promotion> {
        val headers = buildMap {
            put("X-Stella-Reason", reason.replace(Regex("[\\r\\n]"), " "))
            if (ticket != null) put("X-Stella-Ticket", ticket)
        }
        val body = Json.obj("releaseId" to releaseId, "targetEnvironmentId" to targetEnvironmentId, "reason" to reason)
        if (ticket != null) body.put("ticket", ticket)
        return json("POST", "/api/v1/promotions", body, headers, cancellation, auth).thenApply { Promotion.from(unwrap(it)) }
    }

    companion object {
        private fun enc(s: String) = java.net.URLEncoder.encode(s, Charsets.UTF_8).replace("+", "%20")

        /** The payload of an envelope, or the node itself. Fails on `success:false`. */
        fun unwrap(n: JsonNode): JsonNode {
            if (n.isObject && n.bool("success") == false) {
                val e = n.node("error")
                throw CompletionException(ApiException(200, e.str("code"), e.str("message") ?: "request failed"))
            }
            return if (n.isObject && n.has("data") && (n.has("success") || n.has("meta") || n.size() == 1)) n.get("data") else n
        }

        fun items(n: JsonNode): List<JsonNode> {
            val d = unwrap(n)
            return when {
                d.isArray -> d.toList()
                d.isObject && d.node("items")?.isArray == true -> d.get("items").toList()
                d.isObject && d.node("data")?.isArray == true -> d.get("data").toList()
                else -> throw CompletionException(StellaException("unexpected list response: ${Json.write(n).take(120)}"))
            }
        }
    }
}

/** This daemon's catalog API. */
class IntegrationsClient(baseUrl: URI, http: HttpTransport, bearer: BearerProvider) : AuthedJsonApi(baseUrl, http, bearer) {

    fun page(type: String? = null, limit: Int? = null, cursor: String? = null, cancellation: Cancellation? = null): CompletableFuture<Page<Integration>> =
        json("GET", "/api/v1/integrations${HttpTransport.query("type" to type, "limit" to limit, "cursor" to cursor)}", cancellation = cancellation)
            .thenApply { n ->
                Page(n.node("items")?.map(Integration::from) ?: emptyList(), n.str("nextCursor"))
            }

    /** Follows `nextCursor` until the end, at most [maxPages] pages (a bound against a cursor that never ends). */
    fun all(type: String? = null, pageSize: Int = 100, maxPages: Int = 50, cancellation: Cancellation? = null): CompletableFuture<List<Integration>> {
        val acc = mutableListOf<Integration>()
        fun next(cursor: String?, n: Int): CompletableFuture<List<Integration>> =
            page(type, pageSize, cursor, cancellation).thenCompose { p ->
                acc += p.items
                if (p.nextCursor != null && p.nextCursor != cursor && n + 1 < maxPages) next(p.nextCursor, n + 1)
                else CompletableFuture.completedFuture(acc.toList())
            }
        return next(null, 0)
    }

    fun create(type: String, name: String, config: JsonNode = Json.obj(), authRef: String? = null, cancellation: Cancellation? = null): CompletableFuture<Integration> {
        val body = Json.obj("type" to type, "name" to name, "config" to config)
        if (authRef != null) body.put("authRef", authRef)
        return json("POST", "/api/v1/integrations", body, cancellation = cancellation).thenApply(Integration::from)
    }

    /** Runs a health check. A 501 (health engine not available on this daemon) yields `supported = false`. */
    fun healthCheck(id: String, cancellation: Cancellation? = null): CompletableFuture<HealthCheckResult> =
        request("POST", "/api/v1/integrations/${java.net.URLEncoder.encode(id, Charsets.UTF_8)}/health-check", cancellation = cancellation)
            .thenApply { r ->
                when {
                    r.ok -> HealthCheckResult.from(r.json())
                    r.status == 501 -> {
                        val e = HttpTransport.error(r)
                        HealthCheckResult(false, HealthStatus.UNKNOWN, "not_implemented", e.detail, null, null)
                    }
                    else -> throw CompletionException(HttpTransport.error(r))
                }
            }
}
