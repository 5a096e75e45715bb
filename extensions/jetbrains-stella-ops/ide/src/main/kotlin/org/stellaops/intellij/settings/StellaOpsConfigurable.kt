package org.stellaops.intellij.settings

import com.intellij.openapi.options.BoundConfigurable
import com.intellij.openapi.project.ProjectManager
import com.intellij.openapi.components.service
import com.intellij.openapi.ui.DialogPanel
import com.intellij.ui.dsl.builder.AlignX
import com.intellij.ui.dsl.builder.bindIntText
import com.intellij.ui.dsl.builder.bindItem
import com.intellij.ui.dsl.builder.bindSelected
import com.intellij.ui.dsl.builder.bindText
import com.intellij.ui.dsl.builder.panel
import com.intellij.ui.dsl.builder.toNullableProperty
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
        group("Integration health notifications") {
            row { checkBox("Mute notifications").bindSelected(s::notificationsMuted).comment("The tool window and the status bar still change live") }
            row("Follow:") {
                comboBox(listOf("referenced", "pinned", "all")).bindItem(s::follow.toNullableProperty())
                    .comment("referenced: the integrations named in the project's stella.yaml (<code>integrations:</code>) and the pinned ones")
            }
            row("Pinned integrations:") { textField().bindText(s::pinned).align(AlignX.FILL).comment("Names or ids, comma-separated") }
        }
        group("Refresh") {
            row("Interval (s):") { intTextField(5..3600).bindIntText(s::refreshIntervalSeconds).comment("Integrations are polled only while the hub's event stream is unavailable") }
            row("Request timeout (s):") { intTextField(1..120).bindIntText(s::requestTimeoutSeconds) }
        }
    }

    override fun apply() {
        super.apply()
        PasswordSafeTokenStore.saveDaemonKey(apiKey.ifBlank { null })
        for (p in ProjectManager.getInstance().openProjects) p.service<StellaOpsPlugin>().reload()
    }
}
