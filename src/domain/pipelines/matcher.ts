import { splitLevels, topicMatches, type FilterLevels } from '../topics';
import { narrowingAllows, type Pipeline, type PipelineMapping, type Publisher } from './pipelines';

/**
 * Which pipelines a message goes to: every mapping whose topic filter matches
 * the topic and whose narrowing (client id, username, group) lets the
 * publisher through. A pipeline appears once however many of its mappings
 * match. Built once per change of the pipelines (any node's: see
 * PipelineService), read for every accepted PUBLISH.
 */
export class MappingMatcher<P extends Pick<Pipeline, 'id' | 'mappings'> = Pick<Pipeline, 'id' | 'mappings'>> {
  private readonly entries: Array<{ levels: FilterLevels; mapping: PipelineMapping; pipeline: P }>;

  constructor(pipelines: readonly P[]) {
    this.entries = pipelines.flatMap((pipeline) => pipeline.mappings.map((mapping) => ({ levels: splitLevels(mapping.topicFilter), mapping, pipeline })));
  }

  get empty(): boolean {
    return this.entries.length === 0;
  }

  /** The pipelines `topic` from `who` goes to, in the order they were given. */
  match(topic: string, who: Publisher): P[] {
    if (this.entries.length === 0) return [];
    const found: P[] = [];
    for (const entry of this.entries) {
      if (found.includes(entry.pipeline)) continue;
      if (topicMatches(entry.levels, topic) && narrowingAllows(entry.mapping, who)) found.push(entry.pipeline);
    }
    return found;
  }
}
