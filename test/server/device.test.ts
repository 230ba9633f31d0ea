/**
 * The device the server runs models on: GET /v1/models reports it with its memory (the real runtime status
 * of this machine, and an injected CUDA one), and `mlxk --version --json` names the installed backend.
 */
import { expect, test } from "bun:test";
import * as v from "valibot";
import { EnvelopeSchema, VersionDataSchema } from "../../src/schemas/envelope.ts";
import { ModelListSchema } from "../../src/schemas/openai.ts";
import { runtimeStatus } from "../../src/server/models-source.ts";
import { runCliCapture } from "../support/cli.ts";
import { check, get, makeApp } from "./support/app.ts";
import { ScriptEngine } from "./support/script-engine.ts";

const M = "org/tiny";

test("GET /v1/models carries this machine's device and memory", async () => {
  const rt = runtimeStatus(process.env);
  expect(rt.available).toBe(true);
  const { app } = makeApp({ [M]: () => new ScriptEngine(M) }, { runtime: () => rt });
  const list = check(ModelListSchema, await (await get(app, "/v1/models")).json());
  expect(list.device?.backend).toBe("cpu");
  expect(list.device!.memory_total_bytes).toBeGreaterThan(0);
  expect(list.device!.memory_free_bytes).toBeLessThanOrEqual(list.device!.memory_total_bytes);
});

test("a GPU server reports the card's memory; without a device report the list is plain OpenAI", async () => {
  const device = { backend: "cuda" as const, name: "NVIDIA H200", memory_total_bytes: 150e9, memory_free_bytes: 140e9 };
  const gpu = makeApp({ [M]: () => new ScriptEngine(M) }, { runtime: () => ({ available: true, device }) });
  expect(check(ModelListSchema, await (await get(gpu.app, "/v1/models")).json()).device).toEqual(device);
  const plain = makeApp({ [M]: () => new ScriptEngine(M) });
  expect(Object.keys((await (await get(plain.app, "/v1/models")).json()) as object)).toEqual(["object", "data"]);
});

test("mlxk --version --json names the installed backend and why", async () => {
  const r = await runCliCapture(["--version", "--json"]);
  const data = v.parse(VersionDataSchema, v.parse(EnvelopeSchema, JSON.parse(r.stdout)).data);
  expect(data.backend?.device).toBe("cpu");
  expect(data.backend?.reason).toBeTruthy();
});
