#!/usr/bin/env python3
"""Gateway speed steps (issue 14 §1): each step's effect, timed beside direct and nginx in one run.

One lab network namespace holds the stock MCP server (127.0.0.1:8080), nginx in front of it
(127.0.0.5:8081, bench/native_load.py's configuration) and one `mcp-tailnet-sidecar gateway`
process per step, each on its own loopback alias (TCP, as the non-root default listens), all in
front of the same server, policy and audit on. A step is switched off or on in its gateway
by bench/gateway_variants/sitecustomize.py (BENCH_GATEWAY_STEPS), so every row runs this
checkout's code and differs from the row above it by one step. Beside them, the two floors of
bench/relay_floors.py (a byte pipe; uvicorn + a minimal relay through UpstreamClient) show what
any Python relay, and this architecture without the gateway's own work, cost on the same
machine in the same rounds. wrk drives every path at 1 and
8 kept-alive connections in rotating, interleaved rounds (sidecar_bench.measure_native); the
columns against direct are medians of per-round pairs.

    sudo .venv/bin/python bench/gateway_steps.py [--rounds 5] [--seconds 5] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from native_load import Nginx, wrk_argv, wrk_env, wrk_version  # noqa: E402
from sidecar_bench import (  # noqa: E402
    DOC,
    NGINX_LISTEN,
    POLICY,
    AltGateway,
    BenchError,
    LoadSampler,
    NativePath,
    Stopper,
    _verdict,
    measure_native,
    native_rows,
    stop_proc,
    tree,
)

from mcp_tailnet_lab.netns import LabNetwork, Namespace  # noqa: E402
from mcp_tailnet_lab.sidecar_run import STOCK_PORT  # noqa: E402

VARIANTS_DIR = BENCH / "gateway_variants"
START, END = "<!-- gateway-steps:start -->", "<!-- gateway-steps:end -->"
DNS_NAME = "mcp-steps.bench.ts.net"


@dataclass(frozen=True)
class Step:
    """One gateway process: its key, its row label, and the BENCH_GATEWAY_STEPS it runs with."""

    key: str
    label: str
    steps: str


# The floors under the gateway's cost (bench/relay_floors.py): key, label, kind, where it listens.
FLOORS = (
    ("floor-pipe", "floor: a byte pipe in asyncio (nothing parsed or judged)", "pipe", "127.0.0.6:9080"),
    ("floor-asgi", "floor: uvicorn + a minimal ASGI relay through UpstreamClient (no judging, policy, audit)",
     "asgi", "127.0.0.7:9080"),
)
# Step 5's cuts, undone together for the rows before them (each row's code as it was then).
CUTS = "anyio-timeouts,label-lookups,log-record-fields,httpx-request"
STEPS = (
    Step("gw-shipped", "gateway as shipped before (no sniffio, h11, asyncio loop, httpx)",
         f"no-sniffio,h11,no-uvloop,httpx,{CUTS}"),
    Step("gw-sniffio", "+ sniffio (step 1)", f"h11,no-uvloop,httpx,{CUTS}"),
    Step("gw-httptools", "+ httptools (step 2a)", f"no-uvloop,httpx,{CUTS}"),
    Step("gw-uvloop", "+ uvloop (step 2b; optional extra, not in the image)", f"httpx,{CUTS}"),
    Step("gw-upstream", "httptools + UpstreamClient (step 4)", f"no-uvloop,{CUTS}"),
    Step("gw-timeouts", "+ asyncio.timeout instead of anyio cancel scopes (step 5a)",
         "no-uvloop,label-lookups,log-record-fields,httpx-request"),
    Step("gw-labels", "+ metric children memoised (step 5b)", "no-uvloop,log-record-fields,httpx-request"),
    Step("gw-logrecords", "+ log records without caller/thread/process fields (step 5c)", "no-uvloop,httpx-request"),
    Step("gw-now", "+ UpstreamRequest instead of httpx.Request (step 5d; the gateway as committed now, as the "
         "image runs it)", "no-uvloop"),
    Step("gw-now-uvloop", "+ uvloop (the CLI where uvloop is installed)", ""),
)


def wait_listening(ns: Namespace, hostport: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while f"{hostport} " not in ns.exec(["ss", "-ltnH"]).stdout:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"nothing listens on {hostport} (exit {proc.poll()})")
        time.sleep(0.3)


def run(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="gws-", dir="/tmp"))
    workdir.chmod(0o755)
    policy = workdir / "policy.json"
    policy.write_text(json.dumps(POLICY))
    policy.chmod(0o644)
    steps = [s for s in STEPS if "no-uvloop" in s.steps or importlib.util.find_spec("uvloop")]
    stoppable: list[Any] = []
    with LabNetwork() as network, LoadSampler() as load:
        try:
            ns = network.add_namespace("steps")
            log = (workdir / "stock.log").open("ab")
            stock = ns.popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(STOCK_PORT)],
                             stdout=log, stderr=log)
            stoppable.append(Stopper(lambda: stop_proc(stock, 15)))
            wait_listening(ns, f"127.0.0.1:{STOCK_PORT}", stock)
            nginx = Nginx(ns, workdir / "nginx", NGINX_LISTEN, f"127.0.0.1:{STOCK_PORT}")
            stoppable.append(nginx)
            nginx.start()
            server: dict[str, Callable[[], list[int]]] = {"server": lambda: tree(stock.pid)}
            paths = [
                NativePath("direct", "direct to the server", ns,
                           lambda c, s: wrk_argv(f"http://127.0.0.1:{STOCK_PORT}/mcp", c, s), wrk_env(None),
                           "direct", ns, dict(server)),
                NativePath("nginx", f"nginx {Nginx.version()} in front", ns,
                           lambda c, s: wrk_argv(f"http://{NGINX_LISTEN}/mcp", c, s), wrk_env(None), "direct", ns,
                           {"proxy": lambda: tree(nginx.proc.pid) if nginx.proc else [], **server}),
            ]
            for key, label, kind, hostport in FLOORS:
                proc = ns.popen([sys.executable, str(BENCH / "relay_floors.py"), kind, "--listen", hostport,
                                 "--upstream", f"127.0.0.1:{STOCK_PORT}"], stdout=log, stderr=log)
                stoppable.append(Stopper(lambda proc=proc: stop_proc(proc, 15)))
                wait_listening(ns, hostport, proc)
                host = f"127.0.0.1:{STOCK_PORT}" if kind == "pipe" else None  # the pipe relays Host as sent
                paths.append(NativePath(
                    key, label, ns, lambda c, s, hp=hostport: wrk_argv(f"http://{hp}/mcp", c, s), wrk_env(host),
                    "direct", ns, {"proxy": lambda proc=proc: tree(proc.pid), **server}))
            for i, step in enumerate(steps):
                hostport = f"127.0.0.{10 + i}:9080"
                gw = AltGateway(ns, workdir / step.key, DNS_NAME, f"tcp:{hostport}", extra_env={
                    "SIDECAR_POLICY_FILE": str(policy), "SIDECAR_MAX_CONCURRENT_PER_SOURCE": "4096",
                    "PYTHONPATH": str(VARIANTS_DIR), "BENCH_GATEWAY_STEPS": step.steps})
                stoppable.append(gw)
                gw.start()
                paths.append(NativePath(
                    step.key, step.label, ns, lambda c, s, hp=hostport: wrk_argv(f"http://{hp}/mcp", c, s),
                    wrk_env(DNS_NAME), "direct", ns,
                    {"proxy": lambda gw=gw: [gw.proc.pid] if gw.proc else [], **server}))
            print(f"{len(paths)} paths, {args.rounds} rounds x {args.seconds:g} s at 1 and {args.connections} "
                  "connections", flush=True)
            measure_native(paths, args.rounds, args.seconds, (1, args.connections))
        finally:
            for s in reversed(stoppable):
                s.stop()
            if not args.keep:
                subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return report(args, paths, load)


def report(args: argparse.Namespace, paths: list[NativePath], load: LoadSampler) -> str:
    rows = native_rows(paths)
    by = {(r.path.key, r.connections): r for r in rows}
    conns = (1, args.connections)
    command = ".venv/bin/python bench/gateway_steps.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        START,
        "### Gateway speed steps (`bench/gateway_steps.py`)",
        "",
        f"Produced by `{command}` (as root) on {when}; {load.describe()}. wrk {wrk_version()}.",
        "",
        "One namespace: the stock server, nginx in front of it, and one gateway process per step on its own "
        "loopback alias (TCP, as the non-root default), policy and audit on; each gateway runs this checkout "
        "with one step undone or added by `bench/gateway_variants/sitecustomize.py`, so each row differs from "
        "the one above it by one step. The two floor rows are `bench/relay_floors.py`: a byte pipe in asyncio "
        "(the least any Python relay does) and uvicorn serving a minimal ASGI relay through the gateway's "
        "UpstreamClient (the gateway's architecture without its routing, judging, policy, identity, audit "
        "or metrics). wrk (`bench/mcp_tools_call.lua`, stateless 2026-07-28 `tools/call`, "
        f"answer checked) at 1 and {args.connections} kept-alive connections; {args.rounds} rounds of "
        f"{args.seconds:g} s per path and connection count, rotating order, after a discarded warm-up. p50 and "
        "calls/s are medians over rounds; added and ratio are medians of per-round pairs with direct; CPU is the "
        "proxy's user + system time over every timed run, divided by its calls.",
        "",
        "| path | p50 added, 1 / " + str(args.connections) + " conns | throughput vs direct, 1 / "
        + str(args.connections) + " | proxy CPU ms per call, 1 / " + str(args.connections)
        + " | p50, 1 / " + str(args.connections) + " | calls/s, 1 / " + str(args.connections) + " | failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in paths:
        rs = [by[(p.key, c)] for c in conns]
        base = p.key == "direct"
        lines.append(
            f"| {p.label} | " + ("baseline" if base else " / ".join(f"{r.added_ms:+.2f} ms" for r in rs))
            + " | " + ("baseline" if base else " / ".join(f"{r.ratio:.0%}" for r in rs))
            + " | " + ("—" if base else " / ".join(f"{r.cpu_ms.get('proxy', 0):.3f}" for r in rs))
            + " | " + " / ".join(f"{r.p50_ms:.2f} ms" for r in rs)
            + " | " + " / ".join(f"{r.rate:,.0f}" for r in rs)
            + " | " + f"{sum(r.failed for r in rs)} of {sum(r.requests for r in rs):,} |")
    lines.append("")
    now = paths[-1].key
    for key in ("gw-upstream", "gw-now", now):
        rs = [by.get((key, c)) for c in conns]
        if not all(rs):
            continue
        added, ratio, cpu = [r.added_ms for r in rs], [r.ratio for r in rs], [r.cpu_ms.get("proxy", 0) for r in rs]
        lines.append(
            f"- Targets, {rs[0].path.label} (1 / {args.connections} connections): p50 added < 1 ms: "
            f"**{added[0]:+.2f} / {added[1]:+.2f} ms** ({_verdict(all(a < 1 for a in added))}); throughput >= 80 % "
            f"of direct: **{ratio[0]:.0%} / {ratio[1]:.0%}** ({_verdict(all(x >= 0.8 for x in ratio))}); CPU per "
            f"relayed call <= 1 ms: **{cpu[0]:.2f} / {cpu[1]:.2f} ms** ({_verdict(all(c <= 1 for c in cpu))}).")
        if key == now:
            break
    ng = [by[("nginx", c)] for c in conns]
    lines.append(f"- nginx beside them: {ng[0].added_ms:+.2f} / {ng[1].added_ms:+.2f} ms, {ng[0].ratio:.0%} / "
                 f"{ng[1].ratio:.0%}, {ng[0].cpu_ms.get('proxy', 0):.3f} / {ng[1].cpu_ms.get('proxy', 0):.3f} ms "
                 "CPU per call.")
    for r in rows:
        if r.failed:
            lines.append(f"- {r.path.label}, {r.connections} connections: {r.failed} failed calls; first: "
                         f"`{r.first_bad[:160]}`")
    lines.append(END)
    return "\n".join(lines)


def write_doc(section: str) -> None:
    """Replace the block between the markers, or put it after the sidecar bench's block."""
    text = DOC.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        anchor = "<!-- sidecar-bench:end -->"
        if anchor not in text:
            raise BenchError(f"{DOC} has neither the gateway-steps markers nor {anchor}")
        text = text.replace(anchor, anchor + "\n\n" + section, 1)
    DOC.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the bench makes a network namespace")
    section = run(args)
    print(section)
    if not args.no_write:
        write_doc(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
