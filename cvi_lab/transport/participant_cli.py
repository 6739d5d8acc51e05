"""`python -m cvi_lab.transport.client URL --wav f.wav --record out_dir`: one scripted participant from a shell."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time

from cvi_lab.transport.client import JoinError, ParticipantClient


async def _main(args: argparse.Namespace) -> int:
    client = ParticipantClient(args.url, meeting_token=args.token, keep_every_nth_image=0)
    await client.join(timeout=args.timeout)
    print(f"joined {client.conversation_id} as {client.participant_id}", flush=True)
    try:
        if args.say:
            client.send_interaction({"message_type": "conversation", "event_type": "conversation.respond",
                                     "conversation_id": client.conversation_id, "properties": {"text": args.say}})
        if args.wav:
            await asyncio.sleep(args.lead_in)
            ended = await client.send_wav(args.wav)
            print(f"sent {args.wav}", flush=True)
            await asyncio.sleep(max(0.0, args.linger - (time.monotonic() - ended)))
        else:
            await asyncio.sleep(args.linger)
    finally:
        await client.leave()
    summary = client.summary()
    if args.record:
        client.save(args.record)
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cvi_lab.transport.client",
                                description="Join a conversation_url as a scripted participant; record what comes back.")
    p.add_argument("url", help="the conversation_url (http://HOST/meet/<id>[?t=TOKEN])")
    p.add_argument("--wav", help="audio file to speak as the microphone (silence otherwise)")
    p.add_argument("--say", help="send this text as a conversation.respond interaction")
    p.add_argument("--token", help="meeting_token, if not in the URL")
    p.add_argument("--record", help="folder for received.wav, events.jsonl, video.csv, summary.json")
    p.add_argument("--lead-in", type=float, default=1.0, help="seconds of silence before speaking")
    p.add_argument("--linger", type=float, default=8.0, help="seconds to stay after speaking")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the connection")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return asyncio.run(_main(args))
    except JoinError as exc:
        print(f"error: {exc}")
        return 2

