package org.stellaops.intellij.settings

import com.intellij.openapi.options.BoundConfigurable
import com.intellij.openapi.project.ProjectManager
import com.intellij.openapi.components.service
import com.intellij.openapi.ui.DialogPanel
import com.intellij.ui.dsl.builder.AlignX
import com.intellij.ui.dsl.builder.bindIntText
import com.intellij.ui.dsl.builder.bindText
import com.intellij.ui.dsl.builder.panel
import org.stellaops.intellij.StellaOpsPlugin
import org.stellaops.intellij.auth.PasswordSafeTokenStore

/** Settings | Tools | Stella Ops. */
class StellaOpsConfigurable : BoundConfigurable("Stella Ops") {
    private val s = StellaOpsSettings.getInstance().state
    private var apiKey: String = PasswordSafeTokenStore.loadDaemonKey().orEmpty()

    override fun createPanel(): DialogPanel = panel {
        group("Orchestrator") {
            row("Server URL:") { textField().bindText(s::serverUrl).align(AlignX.FILL).comment("A <code>server:</code> in stella.yaml overrides it") }
            row("Authority URL:") { textField().bindText(s::authorityUrl).align(AlignX.FILL).comment("Empty: same as the server; the token endpoint is found by discovery") }
            row("Client ID:") { textField().bindText(s::clientId) }
        }
        group("Integrations hub") {
            row("Daemon URL:") { textField().bindText(s::integrationsUrl).align(AlignX.FILL).comment("Empty: integration health is not shown") }
            row("API key:") { passwordField().bindText(::apiKey).comment("Kept in the IDE password safe; empty: use the Authority token") }
        }
        group("Refresh") {
            row("Interval (s):") { intTextField(5..3600).bindIntText(s::refreshIntervalSeconds) }
            row("Request timeout (s):") { intTextField(1..120).bindIntText(s::requestTimeoutSeconds) }
        }
    }

    override fun apply() {
        super.apply()
        PasswordSafeTokenStore.saveDaemonKey(apiKey.ifBlank { null })
        for (p in ProjectManager.getInstance().openProjects) p.service<StellaOpsPlugin>().reload()
    }
}
