/**
 * Per-request metrics of the device API with their children cached by label values: prom-client hashes label
 * objects on every call otherwise. Two-level maps (route, then numeric code) so the hot path builds no key string.
 */
import type { ServerResponse } from 'node:http';
import type { UpdateServerMetrics } from './metrics.js';

export class RequestMetrics {
  private readonly requestCounters = new Map<string, Map<number, { inc(): void }>>();
  private readonly durations = new Map<string, { observe(v: number): void }>();
  /** Bounded: app ids come from loaded indexes (or `_unknown`), answers from a fixed set of codes. */
  private readonly answerCounters = new Map<string, Map<string, { inc(): void }>>();
  private answerCounterCount = 0;

  constructor(private readonly metrics: UpdateServerMetrics) {}

  record(route: string, code: number, seconds: number): void {
    let byCode = this.requestCounters.get(route);
    if (!byCode) {
      byCode = new Map();
      this.requestCounters.set(route, byCode);
    }
    let counter = byCode.get(code);
    if (!counter) {
      counter = this.metrics.requests.labels({ route, code: String(code) });
      byCode.set(code, counter);
    }
    counter.inc();
    let duration = this.durations.get(route);
    if (!duration) {
      duration = this.metrics.requestDuration.labels({ route });
      this.durations.set(route, duration);
    }
    duration.observe(seconds);
  }

  /** Records the request when its answer has been sent. */
  observe(route: string, res: ServerResponse): void {
    const start = performance.now();
    res.once('finish', () => this.record(route, res.statusCode, (performance.now() - start) / 1000));
  }

  countAnswer(app: string, answer: string): void {
    let byAnswer = this.answerCounters.get(app);
    let c = byAnswer?.get(answer);
    if (!c) {
      if (this.answerCounterCount > 50_000) {
        this.answerCounters.clear();
        this.answerCounterCount = 0;
        byAnswer = undefined;
      }
      if (!byAnswer) {
        byAnswer = new Map();
        this.answerCounters.set(app, byAnswer);
      }
      c = this.metrics.updateAnswers.labels({ app_id: app, answer });
      byAnswer.set(answer, c);
      this.answerCounterCount++;
    }
    c.inc();
  }
}
