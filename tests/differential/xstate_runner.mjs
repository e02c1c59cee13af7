// XState v5 oracle for statefleet's differential and conformance tests.
//
// Reads one JSON batch on stdin and writes one JSON document on stdout, so a
// whole test session costs one Node start-up:
//
//   in:  {"cases": [{"id", "config", "implementations", "events", "timers"?, "maxIterations"?}]}
//   out: {"xstate": "<version>", "results": [{"id", "events", "steps", "error"?}]}
//
// `config` and `implementations` are JSON produced by translate.py. Any object
// of exactly one key {"$js": "<source>"} is replaced by the value of that
// JavaScript expression, evaluated with `xs` (the xstate module) and `h` (the
// helpers below) in scope. translate.py builds those sources from a fixed
// CEL -> JS library, so no CEL interpreter lives here.
//
// Every step is taken from a *restored* snapshot (`machine.resolveState` over
// the persisted {value, context}), because statefleet's runtime restores every
// step from a checkpoint; restoring also puts parallel regions back in
// document order, which is what statefleet's interpreter uses.
//
// An event may be a placeholder {"$timer": i}: the runner replaces it with the
// i-th (mod count) timer currently pending (scheduled and not cancelled or
// fired), or, when none is pending, with the i-th timer of `timers` (a stale
// delivery), or an unknown event. `events` in the result lists what was sent.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as xs from 'xstate';

const require = createRequire(import.meta.url);
const XSTATE_VERSION = require('xstate/package.json').version;

/** Helpers visible to translated sources as `h`. */
const h = {
  /** Returns a copy of `obj` with `path` (dotted) set to `value`, creating missing objects. */
  setPath(obj, path, value) {
    const keys = path.split('.');
    const root = { ...obj };
    let node = root;
    for (let i = 0; i < keys.length - 1; i += 1) {
      const child = node[keys[i]];
      const copy = child !== null && typeof child === 'object' && !Array.isArray(child) ? { ...child } : {};
      node[keys[i]] = copy;
      node = copy;
    }
    node[keys[keys.length - 1]] = value;
    return root;
  },
  /** Applies [path, value] pairs in order (values already evaluated). */
  setPaths(obj, pairs) {
    let out = obj;
    for (const [path, value] of pairs) {
      out = h.setPath(out, path, value);
    }
    return out;
  },
  /** A custom action whose effect the runner reports: `effect(info, params) -> effect dict`. */
  effect(toEffect) {
    const action = () => {};
    action.sfEffect = toEffect;
    return action;
  },
};

function revive(node) {
  if (Array.isArray(node)) {
    return node.map(revive);
  }
  if (node !== null && typeof node === 'object') {
    const keys = Object.keys(node);
    if (keys.length === 1 && keys[0] === '$js') {
      // eslint-disable-next-line no-new-func
      return new Function('xs', 'h', `"use strict"; return (${node.$js});`)(xs, h);
    }
    const out = {};
    for (const key of keys) {
      out[key] = revive(node[key]);
    }
    return out;
  }
  return node;
}

const json = (value) => (value === undefined ? null : JSON.parse(JSON.stringify(value)));

/** The state value with object keys in document order (XState keeps insertion order). */
function canonicalValue(stateNode, value) {
  if (typeof value === 'string' || value === null || typeof value !== 'object') {
    return value;
  }
  const out = {};
  for (const key of Object.keys(stateNode.states)) {
    if (key in value) {
      out[key] = canonicalValue(stateNode.states[key], value[key]);
    }
  }
  return out;
}

function errorMessage(error) {
  return error instanceof Error ? error.message : String(error);
}

class Case {
  constructor(spec) {
    this.spec = spec;
    const config = revive(spec.config);
    config.options = { ...(config.options ?? {}), maxIterations: spec.maxIterations ?? 1000 };
    this.machine = xs.createMachine(config, revive(spec.implementations ?? {}));
    this.pending = [];
  }

  effectsOf(actions) {
    const effects = [];
    for (const action of actions) {
      if (action.type === 'xstate.raise') {
        if (typeof action.params.delay === 'number') {
          const event = action.params.event.type;
          effects.push({ type: 'scheduleTimer', event, delay: action.params.delay });
          if (!this.pending.includes(event)) {
            this.pending.push(event);
          }
        }
      } else if (action.type === 'xstate.cancel') {
        const event = action.params.sendId;
        effects.push({ type: 'cancelTimer', event });
        this.pending = this.pending.filter((e) => e !== event);
      } else {
        const impl = this.machine.implementations.actions[action.type];
        if (impl && impl.sfEffect) {
          effects.push(json(impl.sfEffect(action.info, action.params)));
        }
      }
    }
    return effects;
  }

  record(snapshot, actions, handled) {
    const step = {
      value: canonicalValue(this.machine.root, json(snapshot.value)),
      context: json(snapshot.context),
      status: snapshot.status,
      effects: this.effectsOf(actions),
      handled,
    };
    if (snapshot.status === 'done') {
      step.output = json(snapshot.output);
    }
    if (snapshot.status === 'error') {
      step.error = errorMessage(snapshot.error);
    }
    return step;
  }

  resolveEvent(event) {
    if (event.$timer === undefined) {
      return event;
    }
    const timers = this.pending.length ? this.pending : (this.spec.timers ?? []);
    const type = timers.length ? timers[event.$timer % timers.length] : 'UNKNOWN_TIMER';
    return { type, payload: {} };
  }

  run() {
    const steps = [];
    const sent = [];
    const [first, firstActions] = xs.initialTransition(this.machine);
    let step = this.record(first, firstActions, true);
    steps.push(step);
    for (const raw of this.spec.events) {
      if (step.status === 'error') {
        break; // contract: no further events are applied after an error
      }
      const event = this.resolveEvent(raw);
      sent.push(event);
      if (event.type.startsWith('xstate.after.')) {
        this.pending = this.pending.filter((e) => e !== event.type);
      }
      if (step.status !== 'active') {
        steps.push({ ...step, effects: [], handled: false });
        continue;
      }
      const restored = this.machine.resolveState({ value: step.value, context: json(step.context) });
      const xevent = { type: event.type, payload: json(event.payload ?? {}) };
      let next;
      try {
        const handled = this.machine.getTransitionData(restored, xevent).length > 0;
        const [snapshot, actions] = xs.transition(this.machine, restored, xevent);
        next = this.record(snapshot, actions, handled);
      } catch (error) {
        next = { ...step, status: 'error', error: errorMessage(error), effects: [], handled: false };
        delete next.output;
      }
      step = next;
      steps.push(step);
    }
    return { id: this.spec.id, events: sent, steps };
  }
}

function main() {
  const batch = JSON.parse(readFileSync(0, 'utf8'));
  const results = batch.cases.map((spec) => {
    try {
      return new Case(spec).run();
    } catch (error) {
      return { id: spec.id, events: [], steps: [], error: errorMessage(error) };
    }
  });
  process.stdout.write(JSON.stringify({ xstate: XSTATE_VERSION, results }));
}

main();
