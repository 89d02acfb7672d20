import * as hdr from 'hdr-histogram-js';

/** Latencies in microseconds, up to 10 minutes, 3 significant digits. */
export const HISTOGRAM = { lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 } as const;

export const newHistogram = () => hdr.build(HISTOGRAM);
