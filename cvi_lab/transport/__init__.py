"""WebRTC transport (aiortc): signaling, media tracks, data channel, meeting page, participant client."""
