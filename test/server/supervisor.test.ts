/**
 * The supervisor as users run it: `bin/mlxk server` as a real process on a real port, against an empty temp cache.
 * Killing the worker brings a new one on the same port; SIGTERM to the parent stops both and frees the port;
 * SIGKILL to the parent still takes the worker down (mlx-knife #60).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readSse } from "../../src/server/openai/sse.ts";
import { writeTinyModel } from "../support/tiny-models.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const BIN = join(ROOT, "bin", "mlxk");
const hub = mkdtempSync(join(tmpdir(), "mlxk-sup-"));
// the per-user server registry (`mlxk ps`) of these tests' servers
const state = mkdtempSync(join(tmpdir(), "mlxk-state-"));
afterAll(() => {
  rmSync(hub, { recursive: true, force: true });
  rmSync(state, { recursive: true, force: true });
});

interface Started {
  proc: ReturnType<typeof Bun.spawn>;
  port: number;
  /** The supervisor's pid, as `server --json` reports it. */
  pid: number;
  workerPid: number;
  stderr: () => string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Poll `cond` until it holds; the bound only stops a broken build from hanging the suite. */
async function until(cond: () => boolean | Promise<boolean>, what: string, maxMs = 30000): Promise<void> {
  const end = Date.now() + maxMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`gave up waiting for: ${what}`);
    await Bun.sleep(50);
  }
}

async function start(args: string[] = [], env: Record<string, string> = {}, wrap?: (cmd: string[]) => string[]): Promise<Started> {
  const cmd = [process.execPath, BIN, "server", "--port", "0", "--json", ...args];
  const proc = Bun.spawn(wrap ? wrap(cmd) : cmd, {
    env: { ...process.env, HF_HUB_CACHE: hub, MLXK_API_KEY: "", XDG_STATE_HOME: state, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  let err = "";
  void (async () => {
    for await (const c of proc.stderr as ReadableStream<Uint8Array>) err += new TextDecoder().decode(c);
  })();
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const r = await reader.read();
    if (r.done) throw new Error(`server exited before its startup line: ${out} ${err}`);
    out += new TextDecoder().decode(r.value);
  }
  reader.releaseLock();
  const line = JSON.parse(out.split("\n")[0]!) as { status: string; command: string; data: { port: number; pid: number; worker_pid: number; host: string; url: string } };
  expect(line.status).toBe("success");
  expect(line.command).toBe("server");
  expect(line.data.host).toBe("127.0.0.1");
  // pid is the supervisor (the process to signal), not the worker it restarts
  if (!wrap) expect(line.data.pid).toBe(proc.pid);
  expect(line.data.worker_pid).not.toBe(line.data.pid);
  return { proc, port: line.data.port, pid: line.data.pid, workerPid: line.data.worker_pid, stderr: () => err };
}

/** The worker answers /health (its cache is empty, so the answer is an honest 503 "no_models"). */
async function healthy(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health`);
    // read every body: an unread response left for the GC may close the pooled connection a later request uses
    const body = (await res.json()) as { status?: string };
    return res.status === 200 || body.status === "no_models";
  } catch {
    return false;
  }
}

function portFree(port: number): boolean {
  try {
    const s = Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } });
    s.stop(true);
    return true;
  } catch {
    return false;
  }
}

describe("mlxk server supervisor", () => {
  test("a killed worker is restarted on the same port; SIGTERM stops both and frees the port", async () => {
    const s = await start();
    expect(await healthy(s.port)).toBe(true);
    expect(((await (await fetch(`http://127.0.0.1:${s.port}/v1/models`)).json()) as { data: unknown[] }).data).toEqual([]);
    process.kill(s.workerPid, "SIGKILL");
    await until(() => s.stderr().includes("worker restarted"), "restart note");
    await until(() => healthy(s.port), "restarted worker answering");
    const newPid = Number(/worker restarted \(pid (\d+)\)/.exec(s.stderr())![1]);
    expect(newPid).not.toBe(s.workerPid);
    s.proc.kill("SIGTERM");
    expect(await s.proc.exited).toBe(0);
    expect(alive(newPid)).toBe(false);
    expect(portFree(s.port)).toBe(true);
  }, 30000);

  test("SIGKILL of the supervisor still takes the worker down (no orphan holding the port); --log-json logs JSON lines", async () => {
    const s = await start(["--log-json"]);
    expect(await healthy(s.port)).toBe(true);
    await until(() => s.stderr().includes("/health"), "access log line");
    const line = s.stderr().split("\n").find((l) => l.includes("/health"))!;
    expect(JSON.parse(line)).toMatchObject({ level: "info", msg: "GET /health 503" });
    s.proc.kill("SIGKILL");
    await s.proc.exited;
    await until(() => !alive(s.workerPid), "orphaned worker to exit");
    await until(() => portFree(s.port), "port to be free");
  }, 30000);

  test("first SIGTERM drains: a running stream finishes with [DONE]", async () => {
    const model = writeTinyModel("llama", join(hub, "..", `${hub.split("/").pop()}-tiny`));
    const s = await start(["--model", model]);
    await until(() => healthy(s.port), "model loaded");
    const stream = (port: number, m: string, max: number) =>
      fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: m, messages: [{ role: "user", content: "hi" }], max_tokens: max, temperature: 0, stream: true }),
      });
    const res = await stream(s.port, model, 40);
    s.proc.kill("SIGTERM");
    const frames: string[] = [];
    for await (const d of readSse(res.body!)) frames.push(d);
    expect(frames.at(-1)).toBe("[DONE]");
    expect(await s.proc.exited).toBe(0);
    expect(alive(s.workerPid)).toBe(false);
    rmSync(model, { recursive: true, force: true });
  }, 90000);

  test("a second signal kills a busy worker at once", async () => {
    // a long prompt on a long-context model keeps the worker in prefill far past the drain (tens of seconds), whatever the random weights generate
    const model = writeTinyModel("llama", join(hub, "..", `${hub.split("/").pop()}-tiny2`));
    const cfgPath = join(model, "config.json");
    writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, "utf8")), max_position_embeddings: 1_000_000 }));
    const s = await start(["--model", model]);
    await until(() => healthy(s.port), "model loaded");
    const res = await fetch(`http://127.0.0.1:${s.port}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model, messages: [{ role: "user", content: "ab ".repeat(12000) }], max_tokens: 1, stream: true }),
    });
    expect(res.status).toBe(200);
    // the first frame goes out once the request holds the model, before its prefill. The body is read to the end
    // below: a response nobody holds may be collected, and Bun then closes the connection, which the worker rightly
    // takes for a client that left (the request ends at once and the drain has nothing to wait for)
    const frames = readSse(res.body!);
    const first = await frames.next();
    expect((JSON.parse(first.value as string) as { choices: { delta: { role?: string } }[] }).choices[0]!.delta.role).toBe("assistant");
    s.proc.kill("SIGINT");
    // the worker's own line: it is draining, with the request still running
    await until(() => s.stderr().includes("stopping (SIGTERM)"), "worker draining");
    s.proc.kill("SIGTERM");
    expect(await s.proc.exited).toBe(0);
    await until(() => !alive(s.workerPid), "worker killed");
    expect(s.stderr()).toContain("killing the worker now");
    // killed in prefill: the request never ended on its own, and the stream stops without [DONE]
    expect(s.stderr()).not.toContain("completion model=");
    const rest: string[] = [];
    try {
      for await (const d of frames) rest.push(d);
    } catch {
      // the connection died with the worker
    }
    expect(rest).not.toContain("[DONE]");
    rmSync(model, { recursive: true, force: true });
  }, 60000);

  test("--api-key / MLXK_API_KEY and --cors reach the worker", async () => {
    for (const [args, env] of [[["--api-key", "k1", "--cors", "http://ui.local"], {}], [["--cors", "http://ui.local"], { MLXK_API_KEY: "k1" }]] as const) {
      const s = await start([...args], { ...env });
      const url = `http://127.0.0.1:${s.port}/v1/models`;
      expect((await fetch(url)).status).toBe(401);
      const ok = await fetch(url, { headers: { authorization: "Bearer k1", origin: "http://ui.local" } });
      expect(ok.status).toBe(200);
      expect(ok.headers.get("access-control-allow-origin")).toBe("http://ui.local");
      s.proc.kill("SIGTERM");
      expect(await s.proc.exited).toBe(0);
    }
  }, 30000);

  test("an unknown --model fails before binding, with the resolver's error", async () => {
    const p = Bun.spawn([process.execPath, BIN, "server", "--model", "no/such-model", "--port", "0", "--json"], {
      env: { ...process.env, HF_HUB_CACHE: hub },
      stdout: "pipe",
      stderr: "pipe",
    });
    const out = await new Response(p.stdout as ReadableStream).text();
    expect(await p.exited).toBe(1);
    const env = JSON.parse(out) as { status: string; error: { type: string } };
    expect(env.status).toBe("error");
    expect(env.error.type).toBe("model_not_found");
  });

  test("a bad --port is a usage error", async () => {
    const p = Bun.spawn([process.execPath, BIN, "server", "--port", "99999", "--json"], { env: { ...process.env, HF_HUB_CACHE: hub }, stdout: "pipe", stderr: "pipe" });
    const out = await new Response(p.stdout as ReadableStream).text();
    expect(await p.exited).toBe(2);
    expect((JSON.parse(out) as { error: { type: string } }).error.type).toBe("InvalidArgumentError");
  });

  test("bad prompt-cache flags are usage errors that name the flag", async () => {
    for (const args of [["--prompt-cache-bytes", "lots"], ["--no-prompt-cache", "--prompt-cache-bytes", "1GiB"]]) {
      const p = Bun.spawn([process.execPath, BIN, "server", "--port", "0", ...args, "--json"], { env: { ...process.env, HF_HUB_CACHE: hub }, stdout: "pipe", stderr: "pipe" });
      const out = await new Response(p.stdout as ReadableStream).text();
      expect(await p.exited).toBe(2);
      const err = (JSON.parse(out) as { error: { type: string; message: string } }).error;
      expect(err.type).toBe("InvalidArgumentError");
      expect(err.message).toContain("--prompt-cache-bytes");
    }
  });

  test("a port already taken is a startup failure, not a restart loop", async () => {
    const blocker = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const p = Bun.spawn([process.execPath, BIN, "server", "--port", String(blocker.port), "--json"], {
        env: { ...process.env, HF_HUB_CACHE: hub },
        stdout: "pipe",
        stderr: "pipe",
      });
      const out = await new Response(p.stdout as ReadableStream).text();
      expect(await p.exited).toBe(1);
      expect(out).toContain("Cannot listen");
    } finally {
      blocker.stop(true);
    }
  });
});

describe("process control: ps, stop, dying with the parent", () => {
  const cli = async (args: string[]) => {
    const p = Bun.spawn([process.execPath, BIN, ...args], { env: { ...process.env, XDG_STATE_HOME: state }, stdout: "pipe", stderr: "pipe" });
    const out = await new Response(p.stdout as ReadableStream).text();
    return { code: await p.exited, out, json: () => JSON.parse(out) };
  };

  test("mlxk ps lists the server (supervisor pid, port, requests); mlxk stop <port> stops it and ps forgets it", async () => {
    const s = await start();
    await fetch(`http://127.0.0.1:${s.port}/v1/models`);
    await fetch(`http://127.0.0.1:${s.port}/v1/models`);
    await until(async () => (await cli(["ps", "--json"])).json().data.servers[0]?.requests === 2, "request count in the registry");
    const ps = (await cli(["ps", "--json"])).json().data;
    expect(ps.count).toBe(1);
    expect(ps.servers[0]).toMatchObject({ pid: s.pid, worker_pid: s.workerPid, port: s.port, model: null, requests: 2 });
    expect(ps.servers[0].uptime_s).toBeGreaterThanOrEqual(0);
    const human = await cli(["ps"]);
    expect(human.out).toMatch(/PID\s+\| PORT\s+\| MODEL/);
    expect(human.out).toContain(String(s.port));
    const stop = await cli(["stop", String(s.port), "--json"]);
    expect(stop.code).toBe(0);
    expect(stop.json().data.stopped).toEqual([{ pid: s.pid, port: s.port, model: null }]);
    expect(await s.proc.exited).toBe(0);
    expect(alive(s.workerPid)).toBe(false);
    expect((await cli(["ps", "--json"])).json().data.count).toBe(0);
    expect((await cli(["stop", "--json"])).json().data.count).toBe(0);
    expect((await cli(["stop", "12345", "--json"])).json().error.type).toBe("model_not_found");
  }, 30000);

  test("stop with several servers and no pid/port is ambiguous; a pid not in the registry is refused", async () => {
    const a = await start();
    const b = await start();
    const amb = await cli(["stop", "--json"]);
    expect(amb.code).toBe(1);
    expect(amb.json().error.type).toBe("ambiguous_match");
    const nope = await cli(["stop", String(process.pid), "--json"]);
    expect(nope.json().error.type).toBe("model_not_found");
    expect(alive(process.pid)).toBe(true);
    const all = await cli(["stop", "--all", "--json"]);
    expect(all.json().data.count).toBe(2);
    expect(await a.proc.exited).toBe(0);
    expect(await b.proc.exited).toBe(0);
  }, 30000);

  test("SIGTERM to a wrapper that does not pass it on (npx, sh -c) still stops the server", async () => {
    // the trailing `true` keeps sh from exec'ing: it stays the parent, as npm's wrapper does
    const s = await start([], {}, (cmd) => ["sh", "-c", '"$@"; true', "sh", ...cmd]);
    expect(await healthy(s.port)).toBe(true);
    s.proc.kill("SIGTERM");
    await s.proc.exited;
    await until(() => !alive(s.pid) && !alive(s.workerPid), "server to die with its parent");
    await until(() => portFree(s.port), "port to be free");
  }, 30000);
});
