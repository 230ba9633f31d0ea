/** Launch planning without starting anything: hosts, MLX hostfiles, the ring hostfile, ssh command lines, layer splits. */
import { describe, expect, test } from "bun:test";
import { hostsFromList, parseEnvs, parseHostfile, rankCommands, remoteKillScript, remoteScript, ringHostfile, sequentialPorts, shq } from "../../src/distributed/hosts.ts";
import { modelOf } from "../../src/distributed/launch.ts";
import { layerIndex, parseSplit, splitLayers } from "../../src/distributed/pipeline.ts";
import { MlxkError } from "../../src/errors.ts";

describe("hosts", () => {
  test("--hosts: each host repeated -n times, IPs are their own ring address, names need one", () => {
    const f = hostsFromList("10.0.0.1,mac2", 2);
    expect(f.hosts.map((h) => [h.rank, h.ssh, h.ips])).toEqual([
      [0, "10.0.0.1", ["10.0.0.1"]],
      [1, "10.0.0.1", ["10.0.0.1"]],
      [2, "mac2", []],
      [3, "mac2", []],
    ]);
    expect(() => ringHostfile(f.hosts, [1, 2, 3, 4])).toThrow(/'mac2' \(rank 2\) has none/);
    expect(() => hostsFromList("a,,b")).toThrow(MlxkError);
  });

  test("MLX hostfile: the list form and the object form (backend, envs); errors name the entry", () => {
    const list = parseHostfile(JSON.stringify([{ ssh: "m1", ips: ["10.0.0.1"] }, { ssh: "m2", ips: ["10.0.0.2"], rdma: [null, "rdma_en2"] }]));
    expect(list.hosts.map((h) => h.ssh)).toEqual(["m1", "m2"]);
    const obj = parseHostfile(JSON.stringify({ backend: "ring", envs: ["A=1"], hosts: [{ ssh: "m1", ips: ["10.0.0.1"] }] }));
    expect([obj.backend, obj.envs, obj.hosts[0]!.ips]).toEqual(["ring", ["A=1"], ["10.0.0.1"]]);
    expect(() => parseHostfile("[{\"ips\": []}]")).toThrow(/0\.ssh/);
    expect(() => parseHostfile("{nope")).toThrow(/not JSON/);
    expect(() => parseHostfile("[]")).toThrow(/no hosts/);
  });

  test("ring hostfile: one [ip:port…] list per rank, IPv6 bracketed; remote ports follow mlx.launch", () => {
    const hosts = [
      { rank: 0, ssh: "a", ips: ["10.0.0.1"] },
      { rank: 1, ssh: "b", ips: ["fe80::1", "10.0.1.2"] },
    ];
    expect(JSON.parse(ringHostfile(hosts, sequentialPorts(2)))).toEqual([["10.0.0.1:32323"], ["[fe80::1]:32324", "10.0.1.2:32324"]]);
  });

  test("local ranks run directly with MLX_RANK/MLX_HOSTFILE; remote ranks through ssh -tt with a pid-file script", () => {
    const hosts = [
      { rank: 0, ssh: "127.0.0.1", ips: ["127.0.0.1"] },
      { rank: 1, ssh: "mac2", ips: ["10.0.0.2"] },
    ];
    const o = { self: ["/bin/mlxk"], remoteMlxk: "mlxk", args: ["run", "Qwen3 4B", "it's"], env: { MLXK_LAUNCH: "1" }, ringHostfile: '[["a:1"],["b:2"]]', hostfilePath: "/tmp/r.json", cwd: "/w d" };
    const [local, remote] = rankCommands(hosts, o);
    expect(local!.argv).toEqual(["/bin/mlxk", "run", "Qwen3 4B", "it's"]);
    expect(local!.env).toEqual({ MLXK_LAUNCH: "1", MLX_RANK: "0", MLX_HOSTFILE: "/tmp/r.json" });
    expect(remote!.argv.slice(0, 5)).toEqual(["ssh", "-tt", "-o", "LogLevel=QUIET", "mac2"]);
    const script = remote!.argv[5]!;
    expect(script).toBe(remoteScript(1, o));
    expect(script.startsWith("stty -echo 2>/dev/null; pidfile=$(mktemp); echo $$ > $pidfile; printf '%s\\n' $pidfile; ")).toBe(true);
    expect(script).toContain("cd '/w d' ||");
    expect(script).toContain("export MLXK_LAUNCH=1; ");
    expect(script).toContain(`printf '%s' '[["a:1"],["b:2"]]' > $fname; export MLX_HOSTFILE=$fname; export MLX_RANK=1; `);
    expect(script.endsWith(`exec mlxk run 'Qwen3 4B' 'it'"'"'s'`)).toBe(true);
    // the script is valid shell: bash parses it
    expect(Bun.spawnSync(["bash", "-n", "-c", script]).exitCode).toBe(0);
    expect(remoteKillScript("/tmp/tmp.X")).toContain("kill $pid");
    expect(() => remoteScript(1, { ...o, env: { "BAD-NAME": "1" } })).toThrow(/not a valid environment variable/);
  });

  test("shell quoting and --env parsing", () => {
    expect(shq("plain/path-1.2")).toBe("plain/path-1.2");
    expect(shq("")).toBe("''");
    expect(shq("a b")).toBe("'a b'");
    expect(parseEnvs(["A=1", "B=x=y", "C"])).toEqual({ A: "1", B: "x=y", C: "" });
    expect(() => parseEnvs(["1A=2"])).toThrow(/not a valid environment variable/);
  });

  test("the model a rank command names", () => {
    expect(modelOf(["run", "Llama-3.2-1B", "hi"])).toBe("Llama-3.2-1B");
    expect(modelOf(["run", "--temperature", "0", "m"])).toBe("0"); // flag values are not parsed here: place the model first
    expect(modelOf(["server", "--port", "8000", "--model", "m"])).toBe("m");
    expect(modelOf(["server", "--model=m2"])).toBe("m2");
    expect(modelOf(["server"])).toBeNull();
  });
});

describe("layer split", () => {
  test("even, weighted, at least one layer each, contiguous and complete", () => {
    expect(splitLayers(30, [1, 1])).toEqual([{ start: 0, end: 15 }, { start: 15, end: 30 }]);
    expect(splitLayers(4, [1, 1, 1])).toEqual([{ start: 0, end: 1 }, { start: 1, end: 3 }, { start: 3, end: 4 }]);
    expect(splitLayers(30, [2, 1])).toEqual([{ start: 0, end: 20 }, { start: 20, end: 30 }]);
    expect(splitLayers(3, [100, 1, 1])).toEqual([{ start: 0, end: 1 }, { start: 1, end: 2 }, { start: 2, end: 3 }]);
    expect(() => splitLayers(2, [1, 1, 1])).toThrow(/2 layers cannot be split over 3 ranks/);
  });

  test("--split spellings", () => {
    expect(parseSplit("layers", 3)).toEqual([1, 1, 1]);
    expect(parseSplit("memory", 2)).toBe("memory");
    expect(parseSplit("3, 1", 2)).toEqual([3, 1]);
    expect(() => parseSplit("3,1", 3)).toThrow(/3 positive weights/);
    expect(() => parseSplit("0,1", 2)).toThrow(MlxkError);
  });

  test("checkpoint keys by layer (every model file's naming)", () => {
    expect(layerIndex("model.layers.12.self_attn.q_proj.weight")).toBe(12);
    expect(layerIndex("language_model.model.layers.3.mlp.switch_mlp.up_proj.scales")).toBe(3);
    expect(layerIndex("model.embed_tokens.weight")).toBeNull();
    expect(layerIndex("lm_head.weight")).toBeNull();
  });
});
