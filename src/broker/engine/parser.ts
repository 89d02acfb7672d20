import type { Client as AedesClient } from 'aedes';
import { parserOf } from './client';
import type { Expectation } from './expectation';

/** The mqtt-packet parser's fields the limit uses (mqtt-packet 9, lib/parser.js). */
interface ParserInternals {
  packet: { length: number };
  [MAX_PACKET_BYTES]?: number;
  _parseLength(this: ParserInternals): boolean;
  _emitError(error: Error): void;
}

const MAX_PACKET_BYTES = Symbol('gatehouse.maxPacketBytes');
const limitedPrototypes = new WeakSet<object>();

/**
 * Aedes has no packet size limit: the MQTT parser would buffer a packet of any
 * announced length (up to 256 MB). Fail the connection as soon as the fixed
 * header announces more than `maxBytes`. The parser's class is patched once
 * (not a closure per connection); each parser carries its own limit.
 */
export function limitPacketSize(client: AedesClient, maxBytes: number): void {
  const parser = parserOf(client) as ParserInternals;
  const prototype = Object.getPrototypeOf(parser) as ParserInternals;
  if (!limitedPrototypes.has(prototype)) {
    limitedPrototypes.add(prototype);
    const parseLength = prototype._parseLength;
    prototype._parseLength = function (this: ParserInternals) {
      const parsed = parseLength.call(this);
      const limit = this[MAX_PACKET_BYTES];
      if (parsed && limit !== undefined && this.packet.length > limit) {
        this._emitError(new Error(`packet of ${this.packet.length} bytes exceeds the limit of ${limit}`));
        return false;
      }
      return parsed;
    };
  }
  parser[MAX_PACKET_BYTES] = maxBytes;
}

/** What a fresh client's parser must carry for the limit. */
export function parserExpectations(probe: () => AedesClient): Expectation[] {
  const parser = () => parserOf(probe()) as Partial<ParserInternals>;
  return [
    {
      packageName: 'mqtt-packet',
      what: "the parser's `_parseLength` (where the packet size limit hooks in) is gone",
      holds: () => typeof Object.getPrototypeOf(parser())._parseLength === 'function',
    },
    { packageName: 'mqtt-packet', what: "the parser's `_emitError` is gone", holds: () => typeof parser()._emitError === 'function' },
    { packageName: 'mqtt-packet', what: "the parser's `packet` (with the announced `length`) is gone", holds: () => typeof parser().packet === 'object' },
  ];
}
