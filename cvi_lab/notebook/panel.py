"""The control panel widget: choose persona, replica, language, greeting, timeouts, green screen; start the
call; talk to the replica in the embedded meeting page; watch captions, speaking state and per-turn latency
update; End shows the shutdown reason and usage.

Only the view lives here: the rules are in `form.py`, the call in `session.py`, the words in `present.py`,
the chart in `charts.py`. Every failure (a bad timeout, a 4xx from the server, a lost server) becomes a
message in the panel, never a traceback.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as W

from cvi_lab.domain.conversation import DEFAULT_GREETING
from cvi_lab.domain.ids import DEFAULT_PERSONA_ID
from cvi_lab.notebook import charts, present
from cvi_lab.notebook.client import ApiError
from cvi_lab.notebook.form import PERSONA_DEFAULT, CallForm, FormError
from cvi_lab.notebook.server import RemoteServer, connect, start_server
from cvi_lab.notebook.session import CallSession, Snapshot

IFRAME = ('<iframe src="{src}" width="100%" height="{h}" allow="microphone; camera; autoplay; display-capture" '
          'style="border:1px solid #ccc;border-radius:6px"></iframe>'
          '<div style="font-size:85%">Meeting page: <a href="{src}" target="_blank">{text}</a> '
          '(allow the microphone when the browser asks)</div>')


def meeting_iframe(url: str, height: int = 560) -> str:
    """HTML embedding the meeting page. On loopback the page is a secure context, so the microphone works."""
    return IFRAME.format(src=html.escape(url, quote=True), h=int(height), text=html.escape(url))


class ControlPanel:
    """`ControlPanel()` starts the server in this kernel; `ControlPanel(url=...)` uses a running one."""

    def __init__(self, server: RemoteServer | None = None, *, url: str | None = None, api_key: str | None = None,
                 poll_s: float = 1.0, iframe_height: int = 560, max_call_duration: int = 600,
                 participant_absent_timeout: int = 300) -> None:
        self.server = server or (connect(url, api_key) if url else start_server())
        self.client = self.server.client()
        self.poll_s = float(poll_s)
        self.iframe_height = iframe_height
        self.session: CallSession | None = None
        self.snapshot: Snapshot | None = None
        self._render_lock = threading.RLock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._chart_key: Any = None
        self._poll_failures = 0

        layout = W.Layout(width="100%")
        style = {"description_width": "150px"}
        self.persona = W.Dropdown(description="persona", layout=layout, style=style)
        self.replica = W.Dropdown(description="replica", layout=layout, style=style)
        self.language = W.Combobox(description="language", value="english", options=self._languages(),
                                   ensure_option=False, layout=layout, style=style)
        self.greeting = W.Textarea(description="greeting", value=DEFAULT_GREETING, rows=2, layout=layout, style=style)
        self.context = W.Textarea(description="conversational context", placeholder="facts or instructions for this call",
                                  rows=2, layout=layout, style=style)
        self.max_call_duration = W.Text(description="max call duration s", value=str(max_call_duration), style=style)
        self.participant_left_timeout = W.Text(description="left timeout s", value="0", style=style)
        self.participant_absent_timeout = W.Text(description="absent timeout s", value=str(participant_absent_timeout),
                                                 style=style)
        self.greenscreen = W.Checkbox(description="green screen", value=False, indent=False)
        self.captions_on = W.Checkbox(description="captions on the meeting page", value=True, indent=False)
        self.create_button = W.Button(description="Start call", button_style="success", icon="phone")
        self.end_button = W.Button(description="End", button_style="danger", icon="phone-slash", disabled=True)
        self.reload_button = W.Button(description="Reload lists", icon="refresh")
        self.message = W.HTML()
        self.status = W.HTML()
        self.speaking = W.HTML()
        self.captions = W.HTML(layout=W.Layout(max_height="220px", overflow_y="auto"))
        self.meeting = W.HTML()
        self.chart = W.Image(format="png", layout=W.Layout(max_width="640px"))
        self.summary = W.HTML()

        self.create_button.on_click(lambda _: self.create())
        self.end_button.on_click(lambda _: self.end())
        self.reload_button.on_click(lambda _: self.reload())

        form = W.VBox([
            self.persona, self.replica, self.language, self.greeting, self.context,
            W.HBox([self.max_call_duration, self.participant_left_timeout, self.participant_absent_timeout],
                   layout=W.Layout(flex_flow="row wrap")),
            W.HBox([self.greenscreen, self.captions_on]),
            W.HBox([self.create_button, self.end_button, self.reload_button]),
            self.message,
        ])
        live = W.VBox([self.status, self.speaking, W.HTML("<b>Captions</b>"), self.captions, self.chart, self.summary])
        self.widget = W.VBox([
            W.HTML(f"<b>cvi-lab</b> control panel &middot; server {html.escape(self.server.url)}"),
            form, self.meeting, live,
        ])
        self.reload()

    # ------------------------------------------------------------ display
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def show_message(self, text: str, kind: str = "error") -> None:
        self.message.value = present.message_html(text, kind)

    # ------------------------------------------------------------ lists
    def _languages(self) -> list[str]:
        try:
            return self.server.languages()
        except Exception:  # noqa: BLE001 - a remote server: the defaults
            return ["english", "multilingual"]

    def reload(self) -> None:
        """Fill the persona and replica lists from the server."""
        try:
            personas = self.client.list_personas()
            replicas = self.client.list_replicas()
        except ApiError as exc:
            self.show_message(f"cannot list personas/replicas: {exc}")
            return
        keep_p, keep_r = self.persona.value, self.replica.value
        self.persona.options = [(f"{p.get('persona_name') or 'unnamed'} ({p['persona_id']})", p["persona_id"])
                                for p in personas]
        ids = [p["persona_id"] for p in personas]
        self.persona.value = keep_p if keep_p in ids else (DEFAULT_PERSONA_ID if DEFAULT_PERSONA_ID in ids
                                                          else (ids[0] if ids else None))
        self.replica.options = [("the persona's default replica", PERSONA_DEFAULT)] + [
            (f"{r.get('replica_name') or 'unnamed'} ({r['replica_id']}, {r.get('status', '?')})", r["replica_id"])
            for r in replicas]
        self.replica.value = keep_r if keep_r in [r["replica_id"] for r in replicas] else PERSONA_DEFAULT

    # ------------------------------------------------------------ form -> call
    def form(self) -> CallForm:
        return CallForm(
            persona_id=self.persona.value or "", replica_id=self.replica.value or PERSONA_DEFAULT,
            language=self.language.value, custom_greeting=self.greeting.value,
            conversational_context=self.context.value, max_call_duration=self.max_call_duration.value,
            participant_left_timeout=self.participant_left_timeout.value,
            participant_absent_timeout=self.participant_absent_timeout.value,
            apply_greenscreen=self.greenscreen.value, enable_closed_captions=self.captions_on.value,
        )

    def create(self) -> CallSession | None:
        """Start a call from the form. Returns the session, or None with the reason shown in the panel."""
        if self.session is not None and not (self.snapshot and self.snapshot.ended):
            self.show_message("a call is already running: End it first")
            return None
        try:
            request = self.form().to_request()
        except FormError as exc:
            self.show_message(str(exc))
            return None
        self.show_message("starting the call (the first one loads the models)...", "info")
        self.create_button.disabled = True
        try:
            session = CallSession.create(self.server, request)
        except ApiError as exc:
            self.show_message(f"the server refused the call: {exc.message}" if exc.status else str(exc))
            self.create_button.disabled = False
            return None
        self._follow(session)
        self.show_message(f"call {session.conversation_id} started: join it in the page below", "ok")
        return session

    def attach(self, conversation_id: str) -> CallSession | None:
        """Follow a conversation created elsewhere (e.g. from Python in a notebook cell)."""
        try:
            self.client.get_conversation(conversation_id)
        except ApiError as exc:
            self.show_message(str(exc))
            return None
        session = CallSession(self.server, conversation_id)
        session.subscribe()
        self._follow(session)
        return session

    def _follow(self, session: CallSession) -> None:
        self.stop_polling()
        self.session, self.snapshot, self._chart_key = session, None, None
        self.summary.value = ""
        self.create_button.disabled = True
        self.end_button.disabled = False
        self.refresh()
        if self.snapshot is not None and not self.snapshot.ended:
            self.meeting.value = meeting_iframe(self.snapshot.conversation_url or session.conversation_url,
                                                self.iframe_height)
            self.start_polling()

    def end(self) -> Snapshot | None:
        """End the call; shows (and returns) the final snapshot: shutdown reason, usage, turns."""
        if self.session is None:
            self.show_message("no call to end: start one first")
            return None
        self.stop_polling()
        try:
            snap = self.session.end()
        except ApiError as exc:
            self.show_message(f"could not end the call: {exc}")
            return None
        self._render(snap)
        self.show_message("", "info")
        return snap

    # ------------------------------------------------------------ polling
    def refresh(self) -> Snapshot | None:
        """Poll once and redraw."""
        if self.session is None:
            return None
        try:
            snap = self.session.poll()
        except ApiError as exc:
            self._poll_failures += 1
            self.show_message(f"lost the server: {exc}" if exc.status == 0 else str(exc))
            return None
        self._poll_failures = 0
        self._render(snap)
        return snap

    def start_polling(self) -> None:
        if self._poller is not None and self._poller.is_alive():
            return
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll_loop, name="cvi-lab-panel", daemon=True)
        self._poller.start()

    def stop_polling(self) -> None:
        self._stop.set()
        poller = self._poller
        if poller is not None and poller is not threading.current_thread():
            poller.join(timeout=10)
        self._poller = None

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            snap = self.refresh()
            if (snap is not None and snap.ended) or self._poll_failures >= 10:
                break

    def wait_until_ended(self, timeout: float) -> Snapshot | None:
        """Block until the call ends (a timeout, someone pressed End) or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.snapshot is not None and self.snapshot.ended:
                break
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
            if self._poller is None or not self._poller.is_alive():
                self.refresh()
        return self.snapshot

    # ------------------------------------------------------------ drawing
    def _render(self, snap: Snapshot) -> None:
        with self._render_lock:
            self.snapshot = snap
            self.status.value = f"<b>{present.esc(snap.conversation_id)}</b> &middot; {present.esc(present.status_text(snap))}"
            self.speaking.value = present.speaking_html(snap)
            self.captions.value = present.captions_html(snap)
            key = (len(snap.turns), snap.turns_available, snap.ended)
            if key != self._chart_key:
                self._chart_key = key
                title = "response latency per turn" if snap.turns_available else \
                    "per-turn latency: this server offers no route for it"
                self.chart.value = charts.figure_png(charts.latency_figure(snap.turns, title))
            if snap.ended:
                self.summary.value = present.message_html(present.summary(snap), "info")
                self.meeting.value = (f'<div style="color:#777">The call ended '
                                      f'({present.esc(snap.shutdown_reason or "unknown")}).</div>')
                self.create_button.disabled = False
                self.end_button.disabled = True
