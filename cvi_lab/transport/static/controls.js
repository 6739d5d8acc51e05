// The meeting page's controls around a live call: mute, the microphone choice, the call timer, who is speaking,
// and the background of a green-screen replica. meeting.js owns the connection and hands these the pieces.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  // Mute and the microphone choice. The sender keeps its transceiver: mute disables the track (the browser sends
  // silence), a new microphone replaces the sender's track (no renegotiation).
  function microphone(stats, fail) {
    const muteBtn = $("mute"), select = $("mic"), field = $("mic-field");
    let track = null, sender = null, muted = false;

    function setMuted(value) {
      muted = !!value;
      if (track) track.enabled = !muted;
      stats.muted = muted;
      muteBtn.setAttribute("aria-pressed", String(muted));
      muteBtn.textContent = muted ? "Unmute" : "Mute";
      muteBtn.title = muted ? "The replica cannot hear you" : "The replica hears you";
    }

    async function listDevices() {
      const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
      stats.microphones = devices.map((d) => ({ deviceId: d.deviceId, label: d.label }));
      const current = track ? track.getSettings().deviceId : null;
      select.innerHTML = "";
      devices.forEach((d, i) => {
        const option = document.createElement("option");
        option.value = d.deviceId;
        option.textContent = d.label || "Microphone " + (i + 1);
        option.selected = d.deviceId === current;
        select.appendChild(option);
      });
      field.hidden = devices.length < 2; // nothing to choose from
    }

    async function use(deviceId) {
      let stream;
      try { stream = await navigator.mediaDevices.getUserMedia({ audio: { deviceId: { exact: deviceId } } }); }
      catch (err) { fail("Cannot use that microphone (" + err.name + ")."); listDevices(); return; }
      const next = stream.getAudioTracks()[0];
      next.enabled = !muted;
      await sender.replaceTrack(next);
      if (track) track.stop();
      track = next;
      stats.microphoneLabel = track.label;
      stats.microphoneSwitches += 1;
    }

    muteBtn.onclick = () => setMuted(!muted);
    select.onchange = () => use(select.value);

    return {
      attach(localTrack, rtpSender) {
        track = localTrack;
        sender = rtpSender;
        stats.microphoneLabel = track.label;
        muteBtn.disabled = false;
        setMuted(false);
        if (navigator.mediaDevices.enumerateDevices) {
          listDevices().catch(() => {});
          navigator.mediaDevices.addEventListener("devicechange", () => listDevices().catch(() => {}));
        }
      },
      detach() { muteBtn.disabled = true; select.disabled = true; if (track) track.stop(); },
      setMuted,
      use,
    };
  }

  // mm:ss (h:mm:ss past an hour) since the connection came up.
  function timer(stats) {
    const el = $("timer");
    let startedAt = null, handle = null;
    const format = (s) => {
      const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
      const mm = h ? String(m).padStart(2, "0") : String(m);
      return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
    };
    const tick = () => {
      stats.elapsedS = Math.floor((performance.now() - startedAt) / 1000);
      el.textContent = format(stats.elapsedS);
      el.setAttribute("datetime", "PT" + stats.elapsedS + "S");
    };
    return {
      start() { if (startedAt === null) { startedAt = performance.now(); tick(); handle = setInterval(tick, 250); } },
      stop() { clearInterval(handle); },
    };
  }

  // Who speaks, from the engine's events on the data channel.
  function speaking(stats) {
    const replicaEl = $("speaking"), youEl = $("you"), stage = $("stage");
    function replica(on) {
      if (stats.replicaSpeaking === on) return;
      stats.replicaSpeaking = on;
      if (on) stats.replicaSpeakingTurns += 1;
      replicaEl.dataset.speaking = String(on);
      replicaEl.textContent = on ? "The replica is speaking" : "The replica is listening";
      stage.classList.toggle("replica-speaking", on);
    }
    function user(on) {
      stats.userSpeaking = on;
      youEl.dataset.speaking = String(on);
      youEl.textContent = on ? (stats.muted ? "\u00a0" : "The replica hears you") : "\u00a0";
    }
    return {
      onEvent(type) {
        if (type === "conversation.replica.started_speaking") replica(true);
        else if (type === "conversation.replica.stopped_speaking" || type === "conversation.replica_interrupted") replica(false);
        else if (type === "conversation.user.started_speaking") user(true);
        else if (type === "conversation.user.stopped_speaking") user(false);
      },
      ended() { replica(false); user(false); },
    };
  }

  // A green-screen replica on a background: ?background=transparent|green|<#rrggbb>|image (with
  // ?background_image=URL), or the select. Transparent and image key the video in WebGL (keyer.js); a colour is
  // mixed in by the shader; "green" shows the video as sent.
  function background(stats, fail, video, keyRgb, params) {
    const canvas = $("keyed"), stage = $("stage"), select = $("background"), colourInput = $("background-color");
    const imageOption = select.querySelector('option[value="image"]');
    const imageUrl = params.get("background_image");
    let keyer = null;
    try { keyer = window.cviKeyer.createKeyer(video, canvas, keyRgb); }
    catch (err) { fail("No green-screen keying: " + err.message); return null; }

    function rgba(hex) {
      const n = parseInt(hex.slice(1), 16);
      return [(n >> 16) & 255, (n >> 8) & 255, n & 255, 255];
    }
    function apply(mode) {
      stats.background = mode;
      select.value = mode;
      $("background-color-field").hidden = mode !== "color";
      const keyed = mode !== "green";
      canvas.hidden = !keyed;
      video.classList.toggle("under", keyed); // still playing (the keyer reads it), not seen
      stage.classList.toggle("keyed", keyed);
      stage.style.backgroundImage = mode === "image" ? "url(" + JSON.stringify(new URL(imageUrl, location.href).href) + ")" : "";
      if (keyed) { keyer.setBackground(mode === "color" ? rgba(colourInput.value) : null); keyer.start(); }
      else keyer.stop();
    }

    if (imageUrl) imageOption.hidden = false;
    const wanted = params.get("background") || (imageUrl ? "image" : "transparent");
    if (/^#[0-9a-fA-F]{6}$/.test(wanted)) colourInput.value = wanted;
    const initial = /^#/.test(wanted) ? "color" : wanted;
    $("background-field").hidden = false;
    select.onchange = () => apply(select.value);
    colourInput.oninput = () => apply("color");
    apply(["transparent", "color", "green"].includes(initial) || (initial === "image" && imageUrl) ? initial : "transparent");
    return { keyer, apply };
  }

  window.cviControls = { microphone, timer, speaking, background };
})();
