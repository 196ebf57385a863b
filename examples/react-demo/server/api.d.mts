import type { IncomingMessage, ServerResponse } from 'node:http';

export interface DemoApiConfig {
  secret: string;
  bridgeUrl: string;
  natsUrl?: string;
  initialBalance?: number;
}
export function signToken(secret: string, claims: Record<string, unknown>): string;
export function createApi(
  config: DemoApiConfig,
): (req: IncomingMessage, res: ServerResponse, next?: () => void) => Promise<void>;
