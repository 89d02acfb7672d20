import type { FilterLevels } from '../topics';

/**
 * What access is made of, as every part of Gatehouse sees it: clients'
 * credentials, group rules, groups and their permissions, and what a
 * connection gets from them. Types only; the functions live beside this file.
 */

/** How a client proves who it is. */
export const AUTH_TYPES = ['password', 'certificate', 'certificate_password'] as const;
export type AuthType = (typeof AUTH_TYPES)[number];

/** The longest username a client may have (UTF-16 code units, as zod counts them). */
export const MAX_USERNAME_LENGTH = 128;

/** MQTT over TCP, over WebSocket, and the same two over TLS. */
export type Transport = 'tcp' | 'ws' | 'tls' | 'wss';

/** What authentication needs of a client. */
export interface ClientCredentials {
  id: number;
  username: string;
  authType: AuthType;
  /** Empty for Certificate clients (they keep no password). */
  passwordHash: string;
  /** Certificate clients: the SHA-256 fingerprint of their certificate (`AB:CD:…`); null for password clients. */
  certFingerprint: string | null;
  /** Bumped on every edit of the client. */
  version: number;
}

/** The client certificate a TLS connection presented (and proved it holds the key of). */
export interface ClientCertificate {
  /** `AB:CD:…`, as stored for certificate clients. */
  fingerprint256: string;
  validFrom: Date;
  validTo: Date;
}

export interface AuthenticateInput {
  username?: string;
  password?: Buffer | string;
  /** The MQTT client id from CONNECT. */
  clientId: string;
  remoteAddress?: string;
  transport: Transport;
  /** Over TLS: the client certificate presented, if any. */
  clientCertificate?: ClientCertificate;
  /** Over TLS with mTLS on: a certificate no client has is refused. */
  certificateRequired?: boolean;
}

/** Who a connection is, once authenticated. */
export interface Principal {
  /** The `clients` row. */
  clientRowId: number;
  username: string;
  authType: AuthType;
  /** The MQTT client id from CONNECT. */
  mqttClientId: string;
  transport: Transport;
  remoteAddress?: string;
  /** Certificate clients: the fingerprint of the certificate they connected with. */
  certFingerprint?: string;
}

export type AuthFailure =
  /** No username or no password: there are no anonymous connections. */
  | 'missing_credentials'
  /** Unknown username or wrong password: never told apart. */
  | 'bad_credentials'
  /** Too many recent failures for this username or address. */
  | 'throttled'
  /** The database could not be asked. */
  | 'unavailable'
  /** A client id no MQTT string may hold (U+0000, [MQTT-1.5.3-2]). */
  | 'bad_client_id'
  /** A client certificate out of its dates, or (mTLS) one no client has. */
  | 'certificate_refused';

export type AuthResult =
  /** `access`: the groups and permissions of the connection; the session keeps this snapshot until it ends. */
  | { ok: true; principal: Principal; access: AccessSnapshot }
  | { ok: false; reason: AuthFailure };

export type Effect = 'allow' | 'deny';
export type Action = 'publish' | 'subscribe';
export type MatchBy = 'client' | 'client_id' | 'certificate';

/** A group rule as the matcher needs it. */
export interface RuleRef {
  id: number;
  /** 0-based order on the group-rules page. */
  position: number;
  matchBy: MatchBy;
  /** The `clients` row a rule by client names. */
  clientRowId: number | null;
  /** The client id or pattern a rule by client id matches; the fingerprint a rule by certificate matches. */
  value: string;
}

/** One permission row as stored, with the group it belongs to. */
export interface PermissionRow {
  groupId: number;
  groupName: string;
  /** 0-based order within the group. */
  position: number;
  effect: Effect;
  action: Action;
  /** The filter as written, `%u`/`%c` included. */
  topic: string;
}

/** One row of the rule → group → permission join (permission null for a group without rows). */
export interface RuleGrantRow {
  rule: RuleRef;
  groupId: number;
  groupName: string;
  permission: Omit<PermissionRow, 'groupId' | 'groupName'> | null;
}

/** A permission row made concrete for one connection. */
export interface GrantedPermission extends PermissionRow {
  /**
   * After `%u`/`%c` substitution; null when the row matches nothing. A Deny
   * row whose substituted value is unusable becomes `#` (see acl.ts).
   */
  filter: string | null;
  levels: FilterLevels | null;
}

export interface GrantedGroup {
  id: number;
  name: string;
  /** The rules that gave this group, in page order. */
  via: RuleRef[];
}

/** What one connection may do, fixed at CONNECT for the life of the session. */
export interface AccessSnapshot {
  username: string;
  /** The MQTT client id; undefined when unknown (the console, before one is entered). */
  mqttClientId: string | undefined;
  groups: readonly GrantedGroup[];
  permissions: readonly GrantedPermission[];
  /** Rules by client id not evaluated because the client id is unknown. */
  unresolvedRules: readonly RuleRef[];
}

/** A connection as the rules see it. */
export interface Who {
  clientRowId: number;
  username: string;
  mqttClientId: string | undefined;
  /** The SHA-256 fingerprint of the client certificate the connection authenticated with, if it did. */
  certFingerprint?: string;
}
