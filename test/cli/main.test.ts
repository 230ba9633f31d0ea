import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { EnvelopeSchema, VersionDataSchema } from "../../src/schemas/envelope.ts";
import { runCliCapture } from "../support/cli.ts";

describe("global CLI behaviour", () => {
  test("--version prints name and version", async () => {
    const r = await runCliCapture(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^mlxk \d+\.\d+\.\d+\n$/);
  });

  test("--version --json follows the contract", async () => {
    const r = await runCliCapture(["--version", "--json"]);
    expect(r.code).toBe(0);
    const env = v.parse(EnvelopeSchema, JSON.parse(r.stdout));
    expect(env.command).toBe("version");
    const data = v.parse(VersionDataSchema, env.data);
    expect(data.json_api_spec_version).toBe("0.2.3");
  });

  test("unknown command is a usage error (exit 2) with a JSON envelope", async () => {
    const r = await runCliCapture(["frobnicate", "--json"]);
    expect(r.code).toBe(2);
    const env = v.parse(EnvelopeSchema, JSON.parse(r.stdout));
    expect(env.status).toBe("error");
    expect(env.command).toBeNull();
    expect(env.error?.type).toBe("CommandError");
  });

  test("unknown global flag is refused", async () => {
    const r = await runCliCapture(["--frob"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("Unknown option '--frob'");
  });

  test("no command prints help and exits 2", async () => {
    const r = await runCliCapture([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain("Usage: mlxk");
  });
});
