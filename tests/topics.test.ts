import { describe, expect, it } from 'vitest';
import {
  clientIdPatternMatches,
  filterCovers,
  filtersOverlap,
  substitutePlaceholders,
  topicFilterProblem,
  topicMatches,
  topicNameProblem,
} from '../src/domain/topics';

describe('topicMatches', () => {
  it.each([
    // exact
    ['a/b', 'a/b', true],
    ['a/b', 'a/c', false],
    ['a/b', 'a', false],
    ['a', 'a/b', false],
    ['A', 'a', false],
    // # matches its parent level and everything below
    ['a/#', 'a', true],
    ['a/#', 'a/b', true],
    ['a/#', 'a/b/c', true],
    ['a/#', 'a/', true],
    ['a/#', 'ab', false],
    ['a/#', 'b/a', false],
    ['#', 'a', true],
    ['#', 'a/b/c', true],
    ['#', '/', true],
    ['a/b/#', 'a', false],
    // + at every position, one level only, empty levels included
    ['+', 'a', true],
    ['+', 'a/b', false],
    ['+', '', true],
    ['+/b/c', 'a/b/c', true],
    ['a/+/c', 'a/b/c', true],
    ['a/b/+', 'a/b/c', true],
    ['a/b/+', 'a/b', false],
    ['a/+/c', 'a/b/x/c', false],
    ['+/+', '/a', true],
    ['+/+', 'a/', true],
    ['a/+', 'a/', true],
    ['+/#', 'a', true],
    ['+/#', 'a/b/c', true],
    // empty levels are levels
    ['a//b', 'a//b', true],
    ['a/+/b', 'a//b', true],
    ['a/b', 'a//b', false],
    ['/a', '/a', true],
    ['+/a', '/a', true],
    ['#', '/a', true],
    // $ topics are not matched by a leading wildcard [MQTT-4.7.2-1]
    ['#', '$SYS/x', false],
    ['+/x', '$SYS/x', false],
    ['+', '$SYS', false],
    ['$SYS/#', '$SYS/x', true],
    ['$SYS/+', '$SYS/x', true],
    ['a/#', 'a/$x', true],
    ['a/+', 'a/$x', true],
  ])('%s matches %j: %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });
});

describe('filterCovers (outer covers every topic inner can match)', () => {
  it.each([
    ['#', '#', true],
    ['#', 'a', true],
    ['#', '+/+', true],
    ['#', 'a/#', true],
    ['a/#', 'a/#', true],
    ['a/#', 'a', true],
    ['a/#', 'a/b/+', true],
    ['a/#', 'a/+/#', true],
    ['a/#', '#', false],
    ['a/#', '+', false],
    ['a/#', '+/b', false],
    ['a/b/#', 'a/#', false],
    ['a/+/#', 'a/#', false], // a/# also matches a
    ['+/#', '#', true], // both match every topic of one level or more
    ['+/+/#', '#', false],
    ['a/+', 'a/b', true],
    ['a/+', 'a/+', true],
    ['a/+', 'a/#', false],
    ['a/+', 'a', false],
    ['a/+', 'a/b/c', false],
    ['a/b', 'a/+', false],
    ['a/b', 'a/b', true],
    ['a/b', 'a/b/#', false],
    ['+/b', 'a/b', true],
    ['+/+', 'a//', false],
    ['+/+/+', 'a//', true],
    ['a//b', 'a/+/b', false],
    ['a/+/b', 'a//b', true],
    ['sensors/#', 'sensors/secret/#', true],
    ['sensors/secret/#', 'sensors/#', false],
    ['sensors/+/secret', 'sensors/#', false],
    ['sensors/+/secret', 'sensors/s1/secret', true],
    // $: a leading wildcard covers no $ topic
    ['#', '$SYS/#', false],
    ['#', '$SYS/a', false],
    ['+/a', '$x/a', false],
    ['$SYS/#', '$SYS/a', true],
    ['#', '+/a', true], // +/a matches no $ topic either
  ])('%s covers %s: %s', (outer, inner, expected) => {
    expect(filterCovers(outer, inner)).toBe(expected);
  });
});

describe('filtersOverlap', () => {
  it.each([
    ['sensors/+/secret', 'sensors/#', true],
    ['sensors/+/secret', '#', true],
    ['sensors/+/secret', 'sensors/+/temp', false],
    ['sensors/+/secret', 'sensors/s1/+', true],
    ['a/#', 'a', true],
    ['a/#', 'b/#', false],
    ['#', 'a', true],
    ['a/b', 'a/b/c', false],
    ['a/+', 'a/b/#', true],
    ['+', 'a/#', true],
    ['#', '$SYS/a', false],
    ['$SYS/#', '$SYS/+', true],
    ['a/b/c/#', 'a/+', false],
    ['a/b/#', 'a/+', true], // both match a/b
  ])('%s and %s overlap: %s', (first, second, expected) => {
    expect(filtersOverlap(first, second)).toBe(expected);
    expect(filtersOverlap(second, first)).toBe(expected);
  });
});

describe('topicFilterProblem', () => {
  it.each([
    ['a/b', null],
    ['#', null],
    ['a/#', null],
    ['+', null],
    ['+/+/#', null],
    ['a//b', null],
    ['/', null],
    ['sensors/%c/#', null],
    ['with space', null],
    ['', 'Enter a topic filter.'],
    ['a/#/b', '# must be the last level and stand alone, as in a/#.'],
    ['a#', '# must be the last level and stand alone, as in a/#.'],
    ['a/b#', '# must be the last level and stand alone, as in a/#.'],
    ['##', '# must be the last level and stand alone, as in a/#.'],
    ['a+', '+ must fill a whole level, as in a/+/b.'],
    ['a/+b/c', '+ must fill a whole level, as in a/+/b.'],
    ['a\u0000b', 'The null character is not allowed in a topic.'],
    ['x'.repeat(65535), null],
    ['x'.repeat(65536), 'Use at most 65535 bytes.'],
    ['é'.repeat(32768), 'Use at most 65535 bytes.'], // 65536 bytes in UTF-8
  ])('%j → %s', (filter, problem) => {
    expect(topicFilterProblem(filter)).toBe(problem);
  });

  it('refuses wildcards in a topic to publish to', () => {
    expect(topicNameProblem('a/b')).toBeNull();
    expect(topicNameProblem('a/+')).not.toBeNull();
    expect(topicNameProblem('a/#')).not.toBeNull();
    expect(topicNameProblem('')).not.toBeNull();
  });
});

describe('substitutePlaceholders', () => {
  const who = (username: string, clientId: string | undefined) => ({ username, clientId });
  it.each([
    ['sensors/%c/#', who('u', 'dev-1'), 'sensors/dev-1/#'],
    ['users/%u/%c', who('alice', 'phone'), 'users/alice/phone'],
    ['plain/topic', who('+', '#'), 'plain/topic'], // no placeholder, value never looked at
    ['%c%c', who('u', 'x'), 'xx'],
    ['100%/a', who('u', 'c'), '100%/a'], // a lone % is literal
    ['%x/%', who('u', 'c'), '%x/%'],
    // hostile values make the row match nothing
    ['sensors/%c/#', who('u', '+'), null],
    ['sensors/%c/#', who('u', '#'), null],
    ['sensors/%c/#', who('u', 'a/b'), null],
    ['sensors/%c/#', who('u', '../x'), null],
    ['sensors/%c/#', who('u', 'a+b'), null],
    ['sensors/%c/#', who('u', ''), null],
    ['sensors/%c/#', who('u', 'a\u0000'), null],
    ['sensors/%c/#', who('u', undefined), null],
    ['users/%u/#', who('evil/#', 'c'), null],
    ['users/%u/#', who('a+', 'c'), null],
    // a value is not scanned again: a client id of "%u" stays literal
    ['sensors/%c', who('admin', '%u'), 'sensors/%u'],
    ['a/%u/%c', who('%c', 'real'), 'a/%c/real'],
    // only the placeholders used are checked
    ['sensors/%c/#', who('has/slash', 'dev'), 'sensors/dev/#'],
    // unicode and $ are fine inside a level
    ['sensors/%c', who('u', 'capteur-é'), 'sensors/capteur-é'],
    ['%c/x', who('u', '$SYS'), '$SYS/x'],
  ])('%s with %j → %s', (template, values, expected) => {
    expect(substitutePlaceholders(template, values)).toBe(expected);
  });

  it('never lets a hostile client id widen a grant', () => {
    const grant = substitutePlaceholders('sensors/%c/#', who('u', 'x/#'));
    expect(grant).toBeNull();
    const narrow = substitutePlaceholders('sensors/%c/#', who('u', 'x'))!;
    expect(topicMatches(narrow, 'sensors/y/t')).toBe(false);
  });
});

describe('clientIdPatternMatches', () => {
  it.each([
    ['sensor-1', 'sensor-1', true],
    ['sensor-1', 'sensor-10', false],
    ['sensor-1', 'Sensor-1', false],
    ['sensor-*', 'sensor-1', true],
    ['sensor-*', 'sensor-', true],
    ['sensor-*', 'sensor', false],
    ['sensor-*', 'xsensor-1', false],
    ['*', '', true],
    ['*', 'anything at all', true],
    ['*-east', 'pump-east', true],
    ['*-east', 'pump-west', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'aXbYc', true],
    ['a*b*c', 'acb', false],
    ['a*a', 'a', false],
    ['a*a', 'aa', true],
    ['**', 'x', true],
    ['a.b', 'aXb', false], // no regular expression semantics
    ['a+', 'aa', false],
    ['%', 'anything', false], // no SQL LIKE semantics
    ['_', 'x', false],
    ['a\\*', 'a\\zzz', true],
  ])('%j matches %j: %s', (pattern, clientId, expected) => {
    expect(clientIdPatternMatches(pattern, clientId)).toBe(expected);
  });

  it('takes linear time on a pattern built to backtrack', () => {
    const started = performance.now();
    expect(clientIdPatternMatches('*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(10_000))).toBe(false);
    expect(performance.now() - started).toBeLessThan(200);
  });
});
