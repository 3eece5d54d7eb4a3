#!/usr/bin/env python3
"""Holds N Server-Sent Events streams open against one URL (stdlib only).

Prints `CONNECTED <n>` once every stream has delivered its first event, keeps
reading (and counting events) for --seconds more, then prints one JSON line:
{"clients", "connected", "events", "seconds", "errors", "first_errors"}.
Used by bench.py to measure the server's CPU while it fans out to the streams.
"""

import argparse
import asyncio
import json


async def stream(host, port, path, state, first_event):
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as error:
        state["errors"].append(f"connect: {error}")
        first_event.set()
        return
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    )
    writer.write(request.encode())
    try:
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            state["errors"].append(f"status: {status!r}")
            first_event.set()
            return
        counted_first = False
        while True:
            line = await reader.readline()
            if not line:
                state["errors"].append("closed by server")
                break
            if line.startswith(b"event:"):
                state["events"] += 1
                if not counted_first:
                    counted_first = True
                    state["connected"] += 1
                    first_event.set()
    except (OSError, asyncio.IncompleteReadError) as error:
        state["errors"].append(f"read: {error}")
    finally:
        first_event.set()
        writer.close()


async def main(args):
    state = {"connected": 0, "events": 0, "errors": []}
    firsts = [asyncio.Event() for _ in range(args.clients)]
    tasks = []
    for first in firsts:
        tasks.append(
            asyncio.create_task(stream(args.host, args.port, args.path, state, first))
        )
        # Pace the connects a little so the listen backlog never overflows.
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(
            asyncio.gather(*(f.wait() for f in firsts)), timeout=args.connect_timeout
        )
    except asyncio.TimeoutError:
        pass
    print(f"CONNECTED {state['connected']}", flush=True)
    events_at_connect = state["events"]
    started = asyncio.get_running_loop().time()
    await asyncio.sleep(args.seconds)
    seconds = asyncio.get_running_loop().time() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    result = {
        "clients": args.clients,
        "connected": state["connected"],
        "events": state["events"] - events_at_connect,
        "seconds": seconds,
        "errors": len(state["errors"]),
        "first_errors": state["errors"][:3],
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/api/v1/stream")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connect-timeout", type=float, default=15.0)
    asyncio.run(main(parser.parse_args()))
