import type { Database } from '../db';
import type { AccessSnapshot, Who } from '../domain/access/types';
import type { RuleModel } from '../domain/access/acl';
import type { LocalNode } from '../domain/overview';
import type { SessionDirectory } from '../domain/connections';
import type { EngineTopics } from '../broker/engine';
import type { AuditActor, AuditRecorder } from '../domain/audit';

/** Live broker state the console shows; absent when no broker runs (some tests). */
export interface LiveState {
  /** Live sessions per `clients` row id (on every node, when there are several). */
  sessionsByClient(): Promise<ReadonlyMap<number, number>>;
  /** This node's connections and what it counted since its last overview sample. */
  thisNode?(): Promise<LocalNode>;
  /** Every node's live sessions, and the way to end them; none without a broker. */
  sessions?: SessionDirectory;
  /** Retained messages and the live tail (the Topics page); none without a broker. */
  topics?: EngineTopics;
}

/** The TLS listeners as the certificates page drives them. */
export interface TlsControl {
  status(): import('../tls').TlsStatus;
  /** Applies what is stored now (starts, updates or stops the listeners); throws when it cannot. */
  apply(): Promise<import('../tls').TlsStatus>;
  /** TLS_CERT_FILE is set: files win over the console's uploads. */
  filesInUse: boolean;
  secretKeySet: boolean;
  secretKey: string | undefined;
  /** MQTTS_PORT and HTTPS_PORT, as configured (0: chosen when they start). */
  ports: { mqtts: number; https: number };
}

/** Access as CONNECT finds it: for the permission checker, and for saves to wait on. */
export interface AccessControl {
  /** What `who` may do under the rules as a CONNECT would find them now. */
  accessOf(who: Who): Promise<AccessSnapshot>;
  /** The rule model a CONNECT would match against now (the clients list's access, judged for a page at once). */
  rules(): Promise<RuleModel>;
  /** Resolves once every change committed so far applies to this node's CONNECTs. */
  settled(): Promise<void>;
  /**
   * Changes whenever what the clients list shows may have changed (a change
   * heard from the feed, a last-seen write of this node); null when that
   * cannot be told (the feed is not heard). Read before `rules()` and the
   * list, so a page is never kept under a version newer than what it read (a
   * change counts as heard before the rules are read again): see
   * web/pageCache.ts.
   */
  listVersion?(): string | null;
  /**
   * True when `listVersion` names every change a list can show: a single
   * node, whose last-seen writes are all its own. A page read under it is
   * good until the version changes, without an age limit.
   */
  listVersionComplete?: boolean;
}

/** What every route can read from `c.var`. */
export interface AppEnv {
  Variables: {
    db: Database;
    live: LiveState;
    access: AccessControl;
    /** The signed-in administrator (set on every route but the public ones). */
    administrator?: { id: number; username: string };
    /** SHA-256 of the current session token, to end or replace this session. */
    sessionTokenHash?: string;
    /** The audit trail's buffer: `c.var.audit.record({ kind, actor, subject, details, address })`. */
    audit: AuditRecorder;
    /**
     * Who is acting, for domain calls that record a change (`by`), or for
     * `record()`: the signed-in administrator and their address.
     */
    actor?: AuditActor;
    /** The TLS listeners (absent in tests without a broker). */
    tls?: TlsControl;
    /** A notice left by the previous request (a redirect after a change): shown once, at the top of the page. */
    flash?: string;
  };
}
