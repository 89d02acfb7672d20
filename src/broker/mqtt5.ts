import type { AuthFailure } from '../domain/access/types';

/**
 * The MQTT 5 reason codes Gatehouse sends from its own decisions (README,
 * "MQTT 5"). A 3.1/3.1.1 device gets the return codes it always got; a 5.0
 * device is told which of these applies. Reason strings never say which rule,
 * group or limit decided.
 */
export const ReasonCode = {
  NOT_AUTHORIZED: 0x87,
  CLIENT_IDENTIFIER_NOT_VALID: 0x85,
  BAD_USERNAME_OR_PASSWORD: 0x86,
  SERVER_UNAVAILABLE: 0x88,
  SERVER_SHUTTING_DOWN: 0x8b,
  MESSAGE_RATE_TOO_HIGH: 0x96,
  QUOTA_EXCEEDED: 0x97,
  ADMINISTRATIVE_ACTION: 0x98,
  UNSPECIFIED_ERROR: 0x80,
} as const;

/**
 * CONNACK reason code of a refused CONNECT, by why it was refused. Back-off
 * after repeated failures is 0x97 (Quota exceeded): it passes, where 0x8A
 * (Banned) would tell the device it is refused for good.
 */
export const connackReasonCodes: Record<AuthFailure, number> = {
  bad_client_id: ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
  certificate_refused: ReasonCode.NOT_AUTHORIZED,
  missing_credentials: ReasonCode.BAD_USERNAME_OR_PASSWORD,
  bad_credentials: ReasonCode.BAD_USERNAME_OR_PASSWORD,
  throttled: ReasonCode.QUOTA_EXCEEDED,
  unavailable: ReasonCode.SERVER_UNAVAILABLE,
};

export { disconnectClient, isMqtt5, protocolVersionOf, sessionExpiryOf } from './engine/client';

/** An error a hook hands to Aedes 2, which sends `reasonCode` in a 5.0 PUBACK, PUBREC or CONNACK. */
export function refusal(reasonCode: number, message: string): Error & { reasonCode: number } {
  return Object.assign(new Error(message), { reasonCode });
}
