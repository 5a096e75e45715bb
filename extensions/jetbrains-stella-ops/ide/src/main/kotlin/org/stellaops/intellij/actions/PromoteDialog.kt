package org.stellaops.intellij.actions

import com.intellij.openapi.project.Project
import com.intellij.openapi.ui.DialogWrapper
import com.intellij.ui.SimpleListCellRenderer
import com.intellij.ui.dsl.builder.AlignX
import com.intellij.ui.dsl.builder.bindItem
import com.intellij.ui.dsl.builder.bindText
import com.intellij.ui.dsl.builder.panel
import org.stellaops.core.Environment
import org.stellaops.core.Release
import javax.swing.JComponent

/** Release, target environment, reason and change ticket; the OK button ("Promote") is the confirmation. */
class PromoteDialog(
    project: Project,
    private val releases: List<Release>,
    private val environments: List<Environment>,
    preferredEnvironment: String?,
    preferredRelease: String? = null,
) : DialogWrapper(project) {
    var release: Release? = releases.firstOrNull { it.id == preferredRelease } ?: releases.firstOrNull()
    var environment: Environment? = environments.firstOrNull { it.id == preferredEnvironment || it.name == preferredEnvironment } ?: environments.lastOrNull()
    var reason: String = ""
    var ticket: String = ""

    init {
        title = "Stella Ops: Promote Release"
        setOKButtonText("Promote")
        init()
    }

    override fun createCenterPanel(): JComponent = panel {
        row("Release:") {
            comboBox(releases, SimpleListCellRenderer.create("") { r -> if (r == null) "" else "${r.name}  ${r.status ?: ""}" }).bindItem(::release)
        }
        row("Environment:") {
            comboBox(environments, SimpleListCellRenderer.create("") { e ->
                if (e == null) "" else "${e.displayName ?: e.name}  (now: ${e.currentRelease?.name ?: "—"})"
            }).bindItem(::environment)
        }
        row("Reason:") {
            textField().bindText(::reason).align(AlignX.FILL)
                .validationOnApply { if (it.text.isBlank()) error("A reason is required") else null }
        }
        row("Change ticket:") {
            textField().bindText(::ticket)
                .validationOnApply { if (it.text.isBlank()) error("The Authority requires a ticket for promotions") else null }
        }
    }
}
