/**
 * A `RealtimeError` as data, to cross a message boundary (the tabs' `BroadcastChannel`, the
 * core's worker): a structured clone of an `Error` keeps only its name and message.
 */
import type { RealtimeError } from './types.js';

export interface ErrorData {
  name: string;
  message: string;
  status?: number;
  code?: string;
  final?: boolean;
}

export function errorData(e: unknown): ErrorData {
  const r = e as Partial<RealtimeError> | null | undefined;
  const out: ErrorData = { name: String(r?.name ?? 'Error'), message: String(r?.message ?? e) };
  if (typeof r?.status === 'number') out.status = r.status;
  if (typeof r?.code === 'string') out.code = r.code;
  if (typeof r?.final === 'boolean') out.final = r.final;
  return out;
}

/** The same shape the core gives `onError`: an `Error` with the name and fields it had. */
export function errorFrom(d: ErrorData): RealtimeError {
  const e = new Error(d.message) as RealtimeError;
  e.name = d.name;
  if (d.status !== undefined) e.status = d.status;
  if (d.code !== undefined) e.code = d.code;
  if (d.final !== undefined) e.final = d.final;
  return e;
}
