package org.stellaops.core

import java.time.Duration

/** Base of every failure the core reports to its callers. */
open class StellaException(message: String, cause: Throwable? = null) : RuntimeException(message, cause)

/** The backend could not be reached (connection refused, DNS, timeout). Callers fall back to the cache. */
class OfflineException(val endpoint: String, cause: Throwable?) :
    StellaException("$endpoint is unreachable: ${cause?.javaClass?.simpleName ?: "error"}${cause?.message?.let { " ($it)" } ?: ""}", cause)

/** No usable credentials: the user has to sign in. */
class NotSignedInException(message: String = "not signed in") : StellaException(message)

/**
 * An HTTP error from a backend. [code] is the Orchestrator error code, the OAuth `error` value, or the
 * problem+json `type`/`title`; [retryAfter] is parsed from the Retry-After header (429/503).
 */
class ApiException(
    val status: Int,
    val code: String?,
    val detail: String,
    val retryAfter: Duration? = null,
    val validationErrors: List<String> = emptyList(),
) : StellaException("HTTP $status${code?.let { " $it" } ?: ""}: $detail")
