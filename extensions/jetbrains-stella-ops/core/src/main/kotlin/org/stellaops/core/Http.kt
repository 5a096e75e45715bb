package org.stellaops.core

import com.fasterxml.jackson.databind.JsonNode
import java.io.IOException
import java.net.URI
import java.net.URLEncoder
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.net.http.HttpTimeoutException
import java.nio.charset.StandardCharsets
import java.time.Duration
import java.util.concurrent.CancellationException
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CompletionException
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.ExecutionException

/**
 * Cancels every request registered with it. A UI passes one per refresh/action and cancels it when the
 * user closes the view or starts a new refresh; in-flight java.net.http exchanges are aborted.
 */
class Cancellation {
    @Volatile var isCancelled: Boolean = false
        private set
    private val futures = CopyOnWriteArrayList<CompletableFuture<*>>()

    fun register(f: CompletableFuture<*>) {
        futures.add(f)
        if (isCancelled) f.cancel(true)
        f.whenComplete { _, _ -> futures.remove(f) }
    }

    fun cancel() {
        isCancelled = true
        futures.forEach { it.cancel(true) }
    }
}

/** Response of [HttpTransport.send]: status, headers we need, and the body as text. */
class HttpResult(val status: Int, val body: String, val headers: Map<String, List<String>>) {
    fun header(name: String): String? =
        headers.entries.firstOrNull { it.key.equals(name, ignoreCase = true) }?.value?.firstOrNull()

    fun json(): JsonNode = if (body.isBlank()) Json.obj() else Json.parse(body)
    val ok: Boolean get() = status in 200..299
}

/**
 * All network I/O of the core goes through here: async, with a per-request timeout, a connect timeout,
 * and cancellation. Connection-level failures become [OfflineException].
 */
class HttpTransport(
    val requestTimeout: Duration = Duration.ofSeconds(10),
    connectTimeout: Duration = Duration.ofSeconds(5),
    val userAgent: String = "stella-ops-jetbrains/0.1",
) {
    val client: HttpClient = HttpClient.newBuilder()
        .connectTimeout(connectTimeout)
        .followRedirects(HttpClient.Redirect.NEVER)
        .version(HttpClient.Version.HTTP_1_1)
        .build()

    fun send(
        method: String,
        uri: URI,
        headers: Map<String, String> = emptyMap(),
        body: String? = null,
        contentType: String? = null,
        cancellation: Cancellation? = null,
    ): CompletableFuture<HttpResult> {
        val b = HttpRequest.newBuilder(uri)
            .timeout(requestTimeout)
            .header("Accept", "application/json, application/problem+json")
            .header("User-Agent", userAgent)
        headers.forEach { (k, v) -> b.header(k, v) }
        if (contentType != null) b.header("Content-Type", contentType)
        b.method(method, if (body == null) HttpRequest.BodyPublishers.noBody() else HttpRequest.BodyPublishers.ofString(body))
        val endpoint = "${uri.scheme}://${uri.authority}"
        val raw = client.sendAsync(b.build(), HttpResponse.BodyHandlers.ofString())
        cancellation?.register(raw)
        val result = CompletableFuture<HttpResult>()
        raw.whenComplete { resp, err ->
            if (err == null) {
                result.complete(HttpResult(resp.statusCode(), resp.body() ?: "", resp.headers().map()))
            } else {
                val cause = unwrap(err)
                result.completeExceptionally(
                    when {
                        cause is CancellationException -> cause
                        cause is HttpTimeoutException || cause is IOException -> OfflineException(endpoint, cause)
                        else -> cause
                    }
                )
            }
        }
        // Cancelling the returned future also aborts the exchange.
        result.whenComplete { _, err -> if (err is CancellationException) raw.cancel(true) }
        return result
    }

    companion object {
        fun unwrap(t: Throwable): Throwable {
            var c = t
            while ((c is CompletionException || c is ExecutionException) && c.cause != null) c = c.cause!!
            return c
        }

        fun form(vararg pairs: Pair<String, String?>): String =
            pairs.filter { it.second != null }.joinToString("&") {
                URLEncoder.encode(it.first, StandardCharsets.UTF_8) + "=" + URLEncoder.encode(it.second, StandardCharsets.UTF_8)
            }

        fun query(vararg pairs: Pair<String, Any?>): String {
            val q = pairs.filter { it.second != null }.joinToString("&") {
                URLEncoder.encode(it.first, StandardCharsets.UTF_8) + "=" + URLEncoder.encode(it.second.toString(), StandardCharsets.UTF_8)
            }
            return if (q.isEmpty()) "" else "?$q"
        }

        /** Parses Retry-After as delta-seconds or HTTP-date. */
        fun retryAfter(value: String?, now: java.time.Instant = java.time.Instant.now()): Duration? {
            if (value.isNullOrBlank()) return null
            value.trim().toLongOrNull()?.let { return Duration.ofSeconds(maxOf(0, it)) }
            return try {
                val at = java.time.ZonedDateTime.parse(value.trim(), java.time.format.DateTimeFormatter.RFC_1123_DATE_TIME).toInstant()
                Duration.between(now, at).let { if (it.isNegative) Duration.ZERO else it }
            } catch (e: Exception) { null }
        }

        /**
         * Builds an [ApiException] from any of the error shapes the backends use: RFC 9457 problem+json,
         * the Orchestrator envelope `{success:false, error:{code,message,validationErrors}}`, or an OAuth
         * error `{error, error_description}`.
         */
        fun error(r: HttpResult): ApiException {
            val node = try { r.json() } catch (e: Exception) { null }
            val retry = retryAfter(r.header("Retry-After"))
            val env = node.node("error")
            if (env != null && env.isObject) {
                val ve = env.node("validationErrors")?.map { v -> v.str("message") ?: v.asText() } ?: emptyList()
                return ApiException(r.status, env.str("code"), env.str("message") ?: "request failed", retry, ve)
            }
            if (node != null && node.has("error")) {
                return ApiException(r.status, node.str("error"), node.str("error_description") ?: node.str("error")!!, retry)
            }
            if (node != null && (node.has("title") || node.has("detail") || node.has("type"))) {
                val fields = node.node("errors")?.mapNotNull { e -> e.str("message")?.let { m -> e.str("field")?.let { "$it: $m" } ?: m } } ?: emptyList()
                return ApiException(r.status, node.str("code") ?: node.str("type") ?: node.str("title"), node.str("detail") ?: node.str("title") ?: "request failed", retry, fields)
            }
            val text = r.body.take(200).ifBlank { "request failed" }
            return ApiException(r.status, null, text, retry)
        }
    }
}

fun URI.resolvePath(path: String): URI {
    val base = toString().trimEnd('/')
    return URI.create(base + (if (path.startsWith("/")) path else "/$path"))
}
