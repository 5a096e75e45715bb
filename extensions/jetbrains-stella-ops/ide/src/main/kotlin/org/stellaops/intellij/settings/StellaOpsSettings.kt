package org.stellaops.intellij.settings

import com.intellij.openapi.components.PersistentStateComponent
import com.intellij.openapi.components.Service
import com.intellij.openapi.components.State
import com.intellij.openapi.components.Storage
import com.intellij.openapi.components.service
import org.stellaops.core.FollowMode
import org.stellaops.core.StellaSettings

/** Application-level settings (`stellaops.*`); secrets are not here but in PasswordSafe. */
@Service(Service.Level.APP)
@State(name = "StellaOpsSettings", storages = [Storage("stellaops.xml")])
class StellaOpsSettings : PersistentStateComponent<StellaOpsSettings.State> {
    class State {
        var serverUrl: String = ""
        var authorityUrl: String = ""
        var clientId: String = "stella-ide"
        var integrationsUrl: String = ""
        var refreshIntervalSeconds: Int = 30
        var requestTimeoutSeconds: Int = 10
        /** No notification about integration health. */
        var notificationsMuted: Boolean = false
        /** `referenced` (stella.yaml `integrations:` and pinned), `pinned` or `all`. */
        var follow: String = FollowMode.REFERENCED.wire
        /** Pinned integrations: names or ids, comma-separated. */
        var pinned: String = ""
    }

    private var myState = State()

    override fun getState(): State = myState
    override fun loadState(state: State) { myState = state }

    /**
     * Core settings, or null until a server URL is configured. [serverOverride], [project] and [referenced]
     * (`integrations:`) come from stella.yaml.
     */
    fun toCore(serverOverride: String? = null, project: String? = null, referenced: List<String> = emptyList()): StellaSettings? {
        val state = myState
        val server = serverOverride?.takeIf { it.isNotBlank() } ?: state.serverUrl.takeIf { it.isNotBlank() } ?: return null
        return StellaSettings(
            serverUrl = server.trimEnd('/'),
            authorityUrl = state.authorityUrl.takeIf { it.isNotBlank() }?.trimEnd('/'),
            clientId = state.clientId.ifBlank { "stella-ide" },
            integrationsUrl = state.integrationsUrl.takeIf { it.isNotBlank() }?.trimEnd('/'),
            project = project,
            refreshIntervalSeconds = state.refreshIntervalSeconds.toLong().coerceIn(5, 3600),
            requestTimeoutSeconds = state.requestTimeoutSeconds.toLong().coerceIn(1, 120),
            follow = FollowMode.of(state.follow),
            notificationsMuted = state.notificationsMuted,
            pinned = state.pinned.split(',').map { it.trim() }.filter { it.isNotEmpty() },
            referencedIntegrations = referenced,
        )
    }

    companion object {
        fun getInstance(): StellaOpsSettings = service()
    }
}
