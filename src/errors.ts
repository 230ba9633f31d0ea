/**
 * The one error class of mlxk. `type` is a closed set; each type maps to a CLI exit code,
 * a JSON `error.type` (kept verbatim from mlx-knife 2.0.x so scripts keep working) and an HTTP status.
 */
export const ERROR_TYPES = {
  // resolution
  model_not_found: 404,
  ambiguous_match: 400,
  model_not_cached: 404,
  hash_not_found: 404,
  // usage / validation
  ValidationError: 400,
  CommandError: 400,
  InvalidArgumentError: 400,
  validation_error: 400,
  context_length_exceeded: 400,
  // cache operations
  cache_not_found: 404,
  workspace_model: 400,
  locks_present: 409,
  snapshots_not_found: 404,
  permission_denied: 403,
  deletion_failed: 500,
  unsafe_path: 400,
  show_operation_failed: 500,
  health_check_failed: 500,
  // pull
  access_denied: 403,
  gated: 403,
  offline: 503,
  download_failed: 503,
  pull_operation_failed: 500,
  requires_confirmation: 409,
  // runtime / inference
  mlx_unavailable: 501,
  unsupported_model: 501,
  not_implemented: 501,
  execution_error: 500,
  insufficient_memory: 507,
  // server
  unauthorized: 401,
  payload_too_large: 413,
  queue_full: 503,
  server_shutdown: 503,
  /** The client went away before the answer (nginx's 499): logged as such, never as a client error. */
  client_closed_request: 499,
  /** --request-timeout ran out (contract name from mlx-knife's server). */
  gateway_timeout: 504,
  InternalError: 500,
} as const;

export type ErrorType = keyof typeof ERROR_TYPES;

/** Usage errors exit 2 (argparse convention of the original); every other error exits 1. */
const USAGE_TYPES: ReadonlySet<ErrorType> = new Set(["CommandError", "InvalidArgumentError"]);

export interface MlxkErrorOptions {
  /** Extra fields copied into the JSON `error` object, e.g. `matches`, `available_hashes`. */
  extra?: Record<string, unknown>;
  /** `data` of the CLI envelope on error (e.g. rm keeps its defaults, pull its skeleton); null when absent. */
  data?: unknown;
  detail?: string;
  retryable?: boolean;
  cause?: unknown;
}

export class MlxkError extends Error {
  readonly type: ErrorType;
  readonly extra: Record<string, unknown>;
  readonly data: unknown;
  readonly detail?: string;
  readonly retryable: boolean;

  constructor(type: ErrorType, message: string, opts: MlxkErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "MlxkError";
    this.type = type;
    this.extra = opts.extra ?? {};
    this.data = opts.data ?? null;
    this.detail = opts.detail;
    this.retryable = opts.retryable ?? false;
  }

  get exitCode(): number {
    return USAGE_TYPES.has(this.type) ? 2 : 1;
  }

  get httpStatus(): number {
    return ERROR_TYPES[this.type];
  }

  /** The `error` member of the CLI JSON envelope. */
  toJSON(): { type: string; message: string } & Record<string, unknown> {
    return { type: this.type, message: this.message, ...this.extra };
  }
}

/** Wrap anything thrown into an MlxkError; unknown exceptions become InternalError with their message. */
export function toMlxkError(e: unknown): MlxkError {
  if (e instanceof MlxkError) return e;
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") return new MlxkError("permission_denied", e.message, { cause: e });
    return new MlxkError("InternalError", e.message, { cause: e });
  }
  return new MlxkError("InternalError", String(e));
}
