package org.stellaops.intellij.toolwindow

import com.intellij.openapi.actionSystem.ActionManager
import com.intellij.openapi.actionSystem.ActionGroup
import com.intellij.openapi.project.DumbAware
import com.intellij.openapi.project.Project
import com.intellij.openapi.ui.SimpleToolWindowPanel
import com.intellij.openapi.wm.ToolWindow
import com.intellij.openapi.wm.ToolWindowFactory
import com.intellij.ui.components.JBLabel
import com.intellij.ui.components.JBScrollPane
import com.intellij.ui.content.ContentFactory
import com.intellij.ui.table.JBTable
import com.intellij.util.ui.JBUI
import org.stellaops.core.Snapshot
import org.stellaops.core.ViewState
import org.stellaops.intellij.StellaOpsPlugin
import java.awt.BorderLayout
import javax.swing.JPanel
import javax.swing.table.DefaultTableModel

/** The "Stella Ops" tool window: Releases, Environments, Deployments and Integrations tabs. */
class StellaOpsToolWindowFactory : ToolWindowFactory, DumbAware {
    override fun createToolWindowContent(project: Project, toolWindow: ToolWindow) {
        val plugin = StellaOpsPlugin.getInstance(project)
        val tabs = listOf(
            Tab("Releases", arrayOf("Name", "Version", "Status", "Created", "Digest")) { s ->
                s.releases?.let { snap -> snap to snap.value.map { arrayOf(it.name, it.version, it.status, it.createdAt, it.digest) } }
            },
            Tab("Environments", arrayOf("Environment", "Current release", "Deployed", "Approvals", "Production")) { s ->
                s.environments?.let { snap ->
                    snap to snap.value.map {
                        arrayOf(it.displayName ?: it.name, it.currentRelease?.name ?: "—", it.currentRelease?.deployedAt, it.requiredApprovals?.toString(), if (it.isProduction) "yes" else "")
                    }
                }
            },
            Tab("Deployments", arrayOf("Release", "From", "To", "Status", "Requested by", "Requested", "Reason")) { s ->
                s.deployments?.let { snap ->
                    snap to snap.value.map { arrayOf(it.releaseName, it.sourceEnvironmentName, it.targetEnvironmentName, it.status, it.requestedBy, it.requestedAt, it.reason) }
                }
            },
            Tab("Integrations", arrayOf("Name", "Type", "Health", "Reason", "Last checked", "Notifies"), { s -> s.live.text.takeIf { it.isNotEmpty() } }) { s ->
                s.integrations?.let { snap ->
                    val core = plugin.core
                    snap to snap.value.map {
                        val follows = when {
                            core == null -> ""
                            core.isPinned(it) -> "pinned"
                            core.isFollowed(it) -> "yes"
                            else -> ""
                        }
                        arrayOf(it.name, it.type, it.status.wire, it.statusReason, it.lastCheckedAt, follows)
                    }
                }
            },
        )
        val factory = ContentFactory.getInstance()
        for (tab in tabs) {
            val content = factory.createContent(tab.panel, tab.title, false)
            content.isCloseable = false
            toolWindow.contentManager.addContent(content)
            plugin.addListener(content) { s -> tab.render(s) }
        }
    }

    /** One tab: a toolbar (Refresh, Promote), a status line (stale/offline/sign-in, [extra]) and a read-only table. */
    private class Tab(
        val title: String,
        columns: Array<String>,
        private val extra: (ViewState) -> String? = { null },
        private val rows: (ViewState) -> Pair<Snapshot<*>, List<Array<String?>>>?,
    ) {
        private val model = object : DefaultTableModel(columns, 0) {
            override fun isCellEditable(row: Int, column: Int) = false
        }
        private val status = JBLabel().apply { border = JBUI.Borders.empty(4, 8) }
        val panel = SimpleToolWindowPanel(true, true).apply {
            val group = ActionManager.getInstance().getAction("StellaOps.ToolbarGroup") as ActionGroup
            val toolbar = ActionManager.getInstance().createActionToolbar("StellaOps.$title", group, true)
            toolbar.targetComponent = this
            setToolbar(toolbar.component)
            setContent(JPanel(BorderLayout()).apply {
                add(status, BorderLayout.NORTH)
                add(JBScrollPane(JBTable(model)), BorderLayout.CENTER)
            })
        }

        fun render(s: ViewState) {
            val r = rows(s)
            model.rowCount = 0
            r?.second?.forEach { model.addRow(it) }
            val line = when {
                r == null -> s.message ?: s.statusText
                r.first.stale -> "Offline — last updated ${r.first.fetchedAt}${s.message?.let { " ($it)" } ?: ""}"
                else -> "Updated ${r.first.fetchedAt}"
            }
            status.text = extra(s)?.let { "$line · $it" } ?: line
        }
    }
}
