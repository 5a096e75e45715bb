package org.stellaops.core

import com.fasterxml.jackson.databind.JsonNode
import com.fasterxml.jackson.databind.node.ObjectNode
import java.nio.file.Files
import java.nio.file.Path
import java.nio.file.StandardCopyOption
import java.time.Clock
import java.time.Instant
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CompletionException
import java.util.concurrent.ConcurrentHashMap

/** What a view shows: the data, when it was fetched, and whether it is last-known data from an earlier fetch. */
data class Snapshot<T>(val value: T, val fetchedAt: Instant, val stale: Boolean, val error: String? = null)

/**
 * Last-known data per key, optionally persisted as one JSON file so it survives an IDE restart.
 * Holds no tokens (those are only in the [TokenStore]).
 */
class OfflineCache(private val file: Path? = null, private val clock: Clock = Clock.systemUTC()) {
    private data class Entry(val data: JsonNode, val fetchedAt: Instant)
    private val entries = ConcurrentHashMap<String, Entry>()

    init {
        if (file != null && Files.exists(file)) {
            try {
                val root = Json.parse(Files.readString(file))
                root.fields().forEach { (k, v) ->
                    entries[k] = Entry(v.get("data"), Instant.parse(v.str("fetchedAt")))
                }
            } catch (e: Exception) {
                // A damaged cache file is discarded; the next fetch rewrites it.
            }
        }
    }

    fun put(key: String, data: JsonNode) {
        entries[key] = Entry(data, clock.instant())
        persist()
    }

    fun get(key: String): Pair<JsonNode, Instant>? = entries[key]?.let { it.data to it.fetchedAt }

    fun clear() { entries.clear(); persist() }

    @Synchronized
    private fun persist() {
        val f = file ?: return
        val root: ObjectNode = Json.obj()
        entries.forEach { (k, e) -> root.set<JsonNode>(k, Json.obj("data" to e.data, "fetchedAt" to e.fetchedAt.toString())) }
        Files.createDirectories(f.toAbsolutePath().parent)
        val tmp = f.resolveSibling(f.fileName.toString() + ".tmp")
        Files.writeString(tmp, Json.write(root))
        Files.move(tmp, f, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE)
    }
}

/**
 * A list fetched from a backend with offline fallback: a successful fetch is cached and returned fresh;
 * when the backend is unreachable (or answers 5xx/429) the last-known value is returned marked stale.
 * Without a cached value the error propagates.
 */
class CachedResource<T>(
    private val key: String,
    private val cache: OfflineCache,
    private val encode: (T) -> JsonNode,
    private val decode: (JsonNode) -> T,
    private val fetch: (Cancellation?) -> CompletableFuture<T>,
) {
    fun cached(): Snapshot<T>? = cache.get(key)?.let { (n, at) -> Snapshot(decode(n), at, stale = true) }

    fun load(cancellation: Cancellation? = null): CompletableFuture<Snapshot<T>> =
        fetch(cancellation).handle { v, err ->
            if (err == null) {
                cache.put(key, encode(v))
                Snapshot(v, cache.get(key)!!.second, stale = false)
            } else {
                val c = HttpTransport.unwrap(err)
                val fallback = if (isTransient(c)) cached() else null
                fallback?.copy(error = c.message) ?: throw CompletionException(c)
            }
        }

    companion object {
        fun isTransient(t: Throwable): Boolean =
            t is OfflineException || (t is ApiException && (t.status >= 500 || t.status == 429))

        fun <T> list(
            key: String, cache: OfflineCache, toJson: (T) -> JsonNode, fromJson: (JsonNode) -> T,
            fetch: (Cancellation?) -> CompletableFuture<List<T>>,
        ): CachedResource<List<T>> =
            CachedResource(key, cache, { l -> Json.arr(l.map(toJson)) }, { n -> n.map(fromJson) }, fetch)
    }
}
