import pkg from "../package.json" with { type: "json" };

export const CLI_VERSION: string = pkg.version;
/** Version of the JSON contract; mlx-knife 2.0.7 ships 0.2.3 and scripts check it. */
export const JSON_API_SPEC_VERSION = "0.2.3";
