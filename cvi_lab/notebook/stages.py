"""Widgets for trying each stage (notebook 02): speak + see the replica, transcribe, chat, compare two backends.

The work is done by `StageLab` (stagelab.py); these views only collect input and show results. Every failure
is shown as a message under the widget (never a traceback), so a typo costs a line of red text.
"""

from __future__ import annotations

import base64
import html
import pathlib
import tempfile
from typing import Any, Callable

import ipywidgets as W

from cvi_lab.notebook.present import message_html
from cvi_lab.notebook.stagelab import SAMPLE_TEXT, Speech, StageLab, StageLabError, options, sample_audio, word_error_rate

WIDE = W.Layout(width="100%")
STYLE = {"description_width": "110px"}


def audio_html(speech: Speech) -> str:
    """An <audio> player with the speech embedded as WAV (works in saved notebooks too)."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, speech.samples, speech.sample_rate, format="WAV", subtype="PCM_16")
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<audio controls src="data:audio/wav;base64,{data}"></audio>'


def video_html(path: str | pathlib.Path, width: int = 256) -> str:
    data = base64.b64encode(pathlib.Path(path).read_bytes()).decode()
    return f'<video controls width="{int(width)}" src="data:video/mp4;base64,{data}"></video>'


def _guard(message: W.HTML, busy: W.Button | None, fn: Callable[[], None]) -> None:
    """Run a widget action: bad input and stage errors become a message, the button shows progress."""
    message.value = message_html("working...", "info")
    if busy is not None:
        busy.disabled = True
    try:
        fn()
        message.value = ""
    except (StageLabError, ValueError) as exc:
        message.value = message_html(str(exc))
    except Exception as exc:  # noqa: BLE001 - a stage failure is shown, the notebook goes on
        message.value = message_html(f"{type(exc).__name__}: {exc}")
    finally:
        if busy is not None:
            busy.disabled = False


class _View:
    widget: W.Widget

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class SpeakWidget(_View):
    """Type text -> hear the TTS and watch the replica say it."""

    def __init__(self, lab: StageLab, text: str = "Hello! I am your cvi-lab replica.") -> None:
        self.lab = lab
        self.text = W.Textarea(description="text", value=text, rows=2, layout=WIDE, style=STYLE)
        self.tts = W.Dropdown(description="TTS", options=options("tts"), value="piper" if "piper" in options("tts") else None,
                              style=STYLE)
        self.avatar = W.Dropdown(description="avatar", options=options("avatar"),
                                 value="portrait_256" if "portrait_256" in options("avatar") else None, style=STYLE)
        self.greenscreen = W.Checkbox(description="green screen", value=False, indent=False)
        self.button = W.Button(description="Speak", icon="play", button_style="primary")
        self.message, self.result = W.HTML(), W.HTML()
        self.speech: Speech | None = None
        self.button.on_click(lambda _: self.run())
        self.widget = W.VBox([self.text, W.HBox([self.tts, self.avatar, self.greenscreen, self.button]),
                              self.message, self.result])

    def run(self) -> None:
        def work() -> None:
            speech = self.lab.speak(self.text.value, tts=self.tts.value or "piper")
            clip = self.lab.render(speech, avatar=self.avatar.value or "portrait", greenscreen=self.greenscreen.value)
            self.speech = speech
            self.result.value = (
                f"<div>{audio_html(speech)}</div><div>{video_html(clip.path)}</div>"
                f"<div style='font-size:85%'>{speech.seconds:.2f} s of speech; TTS first audio "
                f"{speech.first_audio_ms:.0f} ms, total {speech.total_ms:.0f} ms; {clip.frames} frames rendered at "
                f"{clip.render_ms_per_frame:.1f} ms/frame</div>")

        _guard(self.message, self.button, work)


class TranscribeWidget(_View):
    """Upload a recording (or use a file path / the last TTS speech) -> ASR text and timing."""

    def __init__(self, lab: StageLab, speak: SpeakWidget | None = None) -> None:
        self.lab, self.speak = lab, speak
        sample = sample_audio()
        self.upload = W.FileUpload(accept=".wav,.flac,.ogg", multiple=False, description="Upload audio")
        self.path = W.Text(description="or a file", value=str(sample) if sample else "", layout=WIDE, style=STYLE,
                           placeholder="/path/to/recording.wav (empty: the last TTS speech)")
        self.asr = W.Dropdown(description="ASR", options=options("asr"),
                              value="faster_whisper_tiny_en" if "faster_whisper_tiny_en" in options("asr") else None,
                              style=STYLE)
        self.button = W.Button(description="Transcribe", icon="microphone", button_style="primary")
        self.message, self.result = W.HTML(), W.HTML()
        self.button.on_click(lambda _: self.run())
        self.widget = W.VBox([W.HBox([self.upload, self.asr, self.button]), self.path, self.message, self.result])

    def source(self) -> Any:
        uploaded = list(self.upload.value or ())
        if uploaded:
            item = uploaded[0]
            name = pathlib.Path(str(item.get("name") or "upload.wav")).name
            tmp = pathlib.Path(tempfile.mkdtemp(prefix="cvi-lab-upload-")) / name
            tmp.write_bytes(bytes(item["content"]))
            return tmp
        if self.path.value.strip():
            return self.path.value.strip()
        if self.speak is not None and self.speak.speech is not None:
            return self.speak.speech
        raise StageLabError("no audio: upload a file, give a path, or press Speak above first")

    def run(self) -> None:
        def work() -> None:
            heard = self.lab.transcribe(self.source(), asr=self.asr.value)
            self.result.value = (f"<div><b>{html.escape(heard.text) or '(nothing heard)'}</b></div>"
                                 f"<div style='font-size:85%'>{heard.backend}: {heard.ms:.0f} ms for "
                                 f"{heard.audio_seconds:.1f} s of audio (real-time factor {heard.real_time_factor:.2f})</div>")

        _guard(self.message, self.button, work)


class ChatWidget(_View):
    """A chat with the LLM stage; the answer streams in; first-token time and tokens/s under it."""

    def __init__(self, lab: StageLab, max_tokens: int = 48) -> None:
        self.lab = lab
        self.history: list[dict[str, str]] = []
        self.system = W.Textarea(description="system prompt", rows=2, layout=WIDE, style=STYLE,
                                 value="You are a friendly, concise assistant. Answer in one or two short sentences.")
        self.llm = W.Dropdown(description="LLM", options=options("llm"), style=STYLE)
        self.max_tokens = W.IntText(description="max tokens", value=int(max_tokens), style=STYLE)
        self.input = W.Text(description="you", placeholder="ask something and press Send", layout=WIDE, style=STYLE)
        self.send = W.Button(description="Send", icon="paper-plane", button_style="primary")
        self.reset = W.Button(description="New chat", icon="eraser")
        self.message, self.log = W.HTML(), W.HTML()
        self._streaming = W.HTML()
        self.send.on_click(lambda _: self.run())
        self.reset.on_click(lambda _: self.clear())
        self.widget = W.VBox([self.system, W.HBox([self.llm, self.max_tokens]), self.log, self._streaming,
                              W.HBox([self.input, self.send, self.reset]), self.message])

    def clear(self) -> None:
        self.history.clear()
        self.log.value = self._streaming.value = ""

    def _draw(self) -> None:
        self.log.value = "".join(f"<div><b>{html.escape(m['role'])}</b>: {html.escape(m['content'])}</div>"
                                 for m in self.history)

    def run(self) -> None:
        text = self.input.value.strip()

        def work() -> None:
            if not text:
                raise StageLabError("message: empty; type a question")
            self.history.append({"role": "user", "content": text})
            self._draw()
            try:
                reply = self.lab.chat(self.history, llm=self.llm.value, max_tokens=self.max_tokens.value,
                                      system=self.system.value.strip() or None,
                                      on_text=lambda t: setattr(self._streaming, "value",
                                                                f"<i>assistant: {html.escape(t)}</i>"))
            except Exception:
                self.history.pop()
                self._draw()
                raise
            self.history.append({"role": "assistant", "content": reply.text})
            self.input.value = ""
            self._draw()
            first = f"{reply.first_token_ms:.0f} ms" if reply.first_token_ms is not None else "-"
            self._streaming.value = (f"<div style='font-size:85%'>first token {first}; {reply.completion_tokens} "
                                     f"tokens at {reply.tokens_per_s:.1f} tok/s; prompt {reply.prompt_tokens} tokens "
                                     f"({reply.cached_prompt_tokens} from the prefix cache)</div>")

        _guard(self.message, self.send, work)


class CompareWidget(_View):
    """Two backends of one stage side by side on the same input (ASR: audio; TTS: text; LLM: a question)."""

    DEFAULTS = {"asr": ("faster_whisper_tiny_en", "pocketsphinx_en"), "tts": ("piper", "piper length_scale=1.3"),
                "llm": ("hf_causal", "hf_causal temperature=0.7")}

    def __init__(self, lab: StageLab, group: str = "asr", text: str = SAMPLE_TEXT, audio: Any = None,
                 reference: str | None = SAMPLE_TEXT) -> None:
        self.lab, self.audio, self.reference = lab, audio, reference
        self.group = W.Dropdown(description="stage", options=["asr", "tts", "llm"], value=group, style=STYLE)
        a, b = self.DEFAULTS[group]
        self.a = W.Combobox(description="backend A", value=a, options=options(group), ensure_option=False, style=STYLE)
        self.b = W.Combobox(description="backend B", value=b, options=options(group), ensure_option=False, style=STYLE)
        self.text = W.Textarea(description="text / question", value=text, rows=2, layout=WIDE, style=STYLE)
        self.button = W.Button(description="Compare", icon="columns", button_style="primary")
        self.message = W.HTML()
        self.columns = W.HBox([W.HTML(layout=W.Layout(width="50%")), W.HTML(layout=W.Layout(width="50%"))])
        self.group.observe(self._group_changed, names="value")
        self.button.on_click(lambda _: self.run())
        self.widget = W.VBox([W.HBox([self.group, self.button]), W.HBox([self.a, self.b]), self.text,
                              self.message, self.columns])

    def _group_changed(self, change: dict) -> None:
        group = change["new"]
        a, b = self.DEFAULTS[group]
        self.a.options = self.b.options = options(group)
        self.a.value, self.b.value = a, b

    def run(self) -> None:
        def work() -> None:
            group, backends = self.group.value, [self.a.value, self.b.value]
            self.lab.check_backends(group, backends)  # before the sample speech below loads a TTS
            cells = []
            if group == "asr":
                audio, reference = self.audio, self.reference
                if audio is None:
                    audio = sample_audio()
                if audio is None:  # no recording: the TTS says the text, which is then the reference
                    audio, reference = self.lab.speak(self.text.value), self.text.value
                for heard in self.lab.compare_asr(audio, backends):
                    err = word_error_rate(reference, heard.text) if reference else None
                    cells.append(f"<b>{html.escape(heard.backend)}</b><div>{html.escape(heard.text)}</div>"
                                 f"<div style='font-size:85%'>{heard.ms:.0f} ms"
                                 + (f", WER {err:.2f}" if err is not None else "") + "</div>")
            elif group == "tts":
                for speech in self.lab.compare_tts(self.text.value, backends):
                    cells.append(f"<b>{html.escape(speech.backend)}</b><div>{audio_html(speech)}</div>"
                                 f"<div style='font-size:85%'>first audio {speech.first_audio_ms:.0f} ms, "
                                 f"{speech.seconds:.2f} s of speech</div>")
            else:
                for reply in self.lab.compare_llm(self.text.value, backends):
                    cells.append(f"<b>{html.escape(reply.backend)}</b><div>{html.escape(reply.text)}</div>"
                                 f"<div style='font-size:85%'>first token {reply.first_token_ms or 0:.0f} ms, "
                                 f"{reply.tokens_per_s:.1f} tok/s</div>")
            for box, cell in zip(self.columns.children, cells):
                box.value = cell

        _guard(self.message, self.button, work)
