// cvi-lab meeting page: join the replica's call over WebRTC (no build step, no CDN, no STUN).
// Tests read window.cviStats; window.cvi.send(obj) sends an interaction, window.cvi.leave() leaves,
// window.cvi.keyedPixel(x, y) reads the keyed canvas of a green-screen call. The controls are controls.js.
"use strict";

(function () {
  const body = document.body;
  const meet = body.dataset.meet; // e.g. /meet/c123
  const conversationId = body.dataset.conversationId;
  const params = new URLSearchParams(location.search);
  const token = params.get("t");
  const $ = (id) => document.getElementById(id);
  const video = $("replica"), audio = $("replica-audio"), statusEl = $("status"), captionsEl = $("captions");
  const leaveBtn = $("leave"), unmuteBtn = $("unmute"), chat = $("chat");

  const stats = {
    conversationId, participantId: null, state: "new", joined: false, left: false,
    framesPresented: 0, framesDecoded: 0, frameWidth: 0, frameHeight: 0,
    audioSamplesReceived: 0, audioPlaying: false, micLive: false,
    muted: false, microphones: [], microphoneLabel: null, microphoneSwitches: 0,
    replicaSpeaking: false, replicaSpeakingTurns: 0, userSpeaking: false, elapsedS: 0, background: null,
    captions: 0, captionTexts: [], events: [], errors: [],
  };
  window.cviStats = stats;

  let pc = null, dc = null, captionsEnabled = false, statsTimer = null, captionTimer = null, backdrop = null;
  const controls = window.cviControls;
  const mic = controls.microphone(stats, fail), clock = controls.timer(stats), speaking = controls.speaking(stats);

  function setStatus(text) { statusEl.textContent = text; }
  function fail(text) { stats.errors.push(text); setStatus(text); }

  function send(obj) {
    if (!dc || dc.readyState !== "open") { fail("not connected: message not sent"); return false; }
    dc.send(typeof obj === "string" ? obj : JSON.stringify(obj));
    return true;
  }

  function showCaption(role, text, final) {
    if (!captionsEnabled || !text) return;
    captionsEl.hidden = false;
    captionsEl.innerHTML = "";
    const span = document.createElement("span");
    span.className = role === "user" ? "user" : "replica";
    span.textContent = (role === "user" ? "You: " : "") + text;
    captionsEl.appendChild(span);
    stats.captions += 1;
    if (final) stats.captionTexts.push({ role, text });
    clearTimeout(captionTimer);
    captionTimer = setTimeout(() => { captionsEl.hidden = true; }, 6000);
  }

  function onEvent(msg) {
    stats.events.push(msg);
    if (stats.events.length > 500) stats.events.shift();
    const type = msg && msg.event_type, props = (msg && msg.properties) || {};
    const text = props.speech || props.text || "";
    speaking.onEvent(type);
    if (type === "conversation.utterance") showCaption(props.role, text, true);
    else if (type === "conversation.utterance.streaming") showCaption(props.role || "replica", text, false);
    else if (type === "conversation.error") stats.errors.push(props.error || "error");
    else if (type === "system.shutdown") { setStatus("The call has ended."); closePc(); }
  }

  async function playAudio() {
    try { await audio.play(); stats.audioPlaying = true; unmuteBtn.hidden = true; }
    catch (err) { unmuteBtn.hidden = false; }
  }
  unmuteBtn.onclick = playAudio;

  function countFrames() {
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
    const tick = () => { stats.framesPresented += 1; video.requestVideoFrameCallback(tick); };
    video.requestVideoFrameCallback(tick);
  }

  async function pollStats() {
    if (!pc) return;
    try {
      const report = await pc.getStats();
      report.forEach((r) => {
        if (r.type !== "inbound-rtp") return;
        if (r.kind === "video") {
          stats.framesDecoded = r.framesDecoded || 0;
          stats.frameWidth = r.frameWidth || stats.frameWidth;
          stats.frameHeight = r.frameHeight || stats.frameHeight;
        } else if (r.kind === "audio") {
          stats.audioSamplesReceived = r.totalSamplesReceived || 0;
        }
      });
    } catch (err) { /* the connection is closing */ }
  }

  function waitForIce(pc, timeoutMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, timeoutMs); // host candidates come in milliseconds; do not hang on a slow interface
    });
  }

  async function join() {
    let info = {};
    try { info = await (await fetch(meet + "/info")).json(); } catch (err) { /* defaults */ }
    captionsEnabled = !!info.captions_enabled;
    if (info.greenscreen) {
      $("stage").classList.add("greenscreen");
      if (!info.audio_only) backdrop = controls.background(stats, fail, video, info.greenscreen_rgb, params);
    }
    if (info.audio_only) $("stage").classList.add("audio-only"); // no video track comes: the page shows none

    const wantCamera = params.get("camera") === "1"; // the camera is optional: ?camera=1 sends it
    setStatus("Asking for the microphone…");
    let local = null;
    try {
      local = await navigator.mediaDevices.getUserMedia({ audio: true, video: wantCamera });
      stats.micLive = local.getAudioTracks().length > 0;
    } catch (err) {
      fail("No microphone (" + err.name + "): joining as a listener.");
    }

    pc = new RTCPeerConnection({ iceServers: [] });
    if (local) local.getTracks().forEach((t) => {
      const sender = pc.addTrack(t, local);
      if (t.kind === "audio") mic.attach(t, sender);
    });
    if (!local || !local.getAudioTracks().length) pc.addTransceiver("audio", { direction: "recvonly" });
    if (!info.audio_only && (!local || !local.getVideoTracks().length)) pc.addTransceiver("video", { direction: "recvonly" });
    dc = pc.createDataChannel("cvi");
    dc.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch (err) { stats.errors.push("non-JSON event"); return; }
      onEvent(msg);
    };
    dc.onopen = () => { chat.hidden = false; };

    pc.ontrack = (e) => {
      if (e.track.kind === "video") { video.srcObject = new MediaStream([e.track]); video.play().catch(() => {}); countFrames(); }
      else { audio.srcObject = new MediaStream([e.track]); playAudio(); }
    };
    pc.onconnectionstatechange = () => {
      stats.state = pc.connectionState;
      if (pc.connectionState === "connected") {
        stats.joined = true; leaveBtn.disabled = false; setStatus("Connected."); clock.start();
      }
      else if (pc.connectionState === "failed") fail("The connection failed.");
      else if (pc.connectionState === "disconnected") setStatus("Connection lost, retrying…");
    };

    setStatus("Connecting…");
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc, 3000);
    const resp = await fetch(meet + "/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", ...(token ? { meeting_token: token } : {}) }),
    });
    const answer = await resp.json();
    if (!resp.ok) {
      fail("Cannot join: " + (answer.error || resp.status));
      closePc();
      return;
    }
    stats.participantId = answer.participant_id;
    await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
    statsTimer = setInterval(pollStats, 500);
  }

  function closePc() {
    clearInterval(statsTimer);
    leaveBtn.disabled = true;
    clock.stop();
    mic.detach();
    speaking.ended();
    if (pc) { pollStats(); const p = pc; pc = null; setTimeout(() => p.close(), 0); }
  }

  async function leave() {
    if (stats.left) return;
    stats.left = true;
    send({ message_type: "conversation", event_type: "conversation.leave", conversation_id: conversationId, properties: {} });
    if (stats.participantId) {
      fetch(meet + "/leave", {
        method: "POST", keepalive: true, headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ participant_id: stats.participantId }),
      }).catch(() => {});
    }
    await new Promise((r) => setTimeout(r, 150)); // let the leave message go out before closing
    closePc();
    setStatus("You left the call.");
  }

  leaveBtn.onclick = leave;
  chat.onsubmit = (e) => {
    e.preventDefault();
    const text = $("chat-text").value.trim();
    if (!text) return;
    send({ message_type: "conversation", event_type: "conversation.respond", conversation_id: conversationId, properties: { text } });
    $("chat-text").value = "";
  };
  window.addEventListener("pagehide", () => {
    if (stats.participantId && !stats.left) {
      navigator.sendBeacon(meet + "/leave", new Blob([JSON.stringify({ participant_id: stats.participantId })], { type: "application/json" }));
    }
  });

  const keyedPixel = (x, y) => (backdrop && stats.background !== "green" ? backdrop.keyer.pixel(x, y) : null);
  window.cvi = { send, leave, stats, keyedPixel, setMuted: mic.setMuted, keyer: () => (backdrop ? backdrop.keyer : null) };
  join().catch((err) => fail("Cannot join: " + err));
})();
