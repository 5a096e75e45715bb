package org.stellaops.intellij.statusbar

import com.intellij.openapi.project.Project
import com.intellij.openapi.util.Disposer
import com.intellij.openapi.wm.StatusBar
import com.intellij.openapi.wm.StatusBarWidget
import com.intellij.openapi.wm.StatusBarWidgetFactory
import com.intellij.openapi.wm.ToolWindowManager
import com.intellij.util.Consumer
import org.stellaops.core.ConnectionState
import org.stellaops.core.ViewState
import org.stellaops.intellij.StellaOpsPlugin
import java.awt.Component
import java.awt.event.MouseEvent

/** "Stella ✓ 12 ✗ 1" / "Stella: offline" / "Stella: sign in"; a click opens the tool window. */
class StellaStatusBarWidgetFactory : StatusBarWidgetFactory {
    override fun getId(): String = ID
    override fun getDisplayName(): String = "Stella Ops"
    override fun isAvailable(project: Project): Boolean = true
    override fun createWidget(project: Project): StatusBarWidget = Widget(project)
    override fun canBeEnabledOn(statusBar: StatusBar): Boolean = true

    companion object { const val ID = "StellaOps.StatusBar" }

    private class Widget(private val project: Project) : StatusBarWidget, StatusBarWidget.TextPresentation {
        @Volatile private var state: ViewState = StellaOpsPlugin.getInstance(project).state
        private var statusBar: StatusBar? = null

        override fun ID(): String = ID
        override fun getPresentation(): StatusBarWidget.WidgetPresentation = this

        override fun install(statusBar: StatusBar) {
            this.statusBar = statusBar
            StellaOpsPlugin.getInstance(project).addListener(this) { s ->
                state = s
                statusBar.updateWidget(ID)
            }
        }

        override fun dispose() { statusBar = null }

        override fun getText(): String = state.statusText
        override fun getAlignment(): Float = Component.CENTER_ALIGNMENT

        override fun getTooltipText(): String = when (state.connection) {
            ConnectionState.SIGNED_OUT -> state.message ?: "Stella Ops: not signed in"
            ConnectionState.OFFLINE -> "Stella Ops is unreachable; showing last-known data. ${state.message ?: ""}"
            ConnectionState.CONNECTED -> state.health?.let { h ->
                "Integrations: ${h.healthy} healthy, ${h.failing} failing, ${h.degraded} degraded, ${h.other} unknown/paused"
            } ?: "Stella Ops: connected"
        } + state.live.text.takeIf { it.isNotEmpty() }?.let { "\nIntegration health: $it" }.orEmpty()

        override fun getClickConsumer(): Consumer<MouseEvent> = Consumer {
            ToolWindowManager.getInstance(project).getToolWindow("Stella Ops")?.show()
        }
    }
}
