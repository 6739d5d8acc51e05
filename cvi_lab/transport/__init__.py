"""WebRTC transport (aiortc): signaling, media tracks, data channel, meeting page, participant client.

Modules (importing this package stays light; aiortc loads only with the modules that need it):
- `contract`  the boundary: what the transport needs from a live call (`CallEndpoint`, `ResolveEndpoint`)
- `signaling` HTTP routes (`install_routes`), the meeting page, one `PeerRoom` per conversation, `meeting_url`
- `room`      a conversation's peers (`PeerRoom`, `Peer`): frame/event fan-out, presence, data channel
- `media`     tracks: mic audio -> 16 kHz frames; replica frames -> paced, A/V-synced RTP
- `rtc`       the aiortc choices both ends share (no STUN, loopback, jitter buffers, message decoding)
- `client`    `ParticipantClient`, a scripted participant that records what it receives (also a CLI)
- `static/`   meeting.html / .js / .css (plain files, no build step, no CDN)
"""
