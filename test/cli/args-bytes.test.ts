import { expect, test } from "bun:test";
import { parseBytesArg } from "../../src/cli/args.ts";
import { MlxkError } from "../../src/errors.ts";

test("--prompt-cache-bytes takes plain bytes or a unit; anything else is a clear InvalidArgumentError", () => {
  expect(parseBytesArg("prompt-cache-bytes", undefined)).toBeUndefined();
  expect(parseBytesArg("prompt-cache-bytes", "1048576")).toBe(1048576);
  expect(parseBytesArg("prompt-cache-bytes", "512MB")).toBe(512e6);
  expect(parseBytesArg("prompt-cache-bytes", "2GiB")).toBe(2 * 2 ** 30);
  expect(parseBytesArg("prompt-cache-bytes", "1.5g")).toBe(1.5e9);
  for (const bad of ["", "-1", "lots", "2 parsecs", "1e9"]) {
    expect(() => parseBytesArg("prompt-cache-bytes", bad)).toThrow(MlxkError);
    expect(() => parseBytesArg("prompt-cache-bytes", bad)).toThrow(/--prompt-cache-bytes must be a size/);
  }
});
