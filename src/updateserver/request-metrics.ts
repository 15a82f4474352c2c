/**
 * Per-request metrics of the device API. Counters are plain numbers per label set on the hot path, added to the
 * prom-client counters when they are collected (a scrape): prom-client validates and hashes the labels of every
 * `inc`, even on a child from `labels()`. Two-level maps (route, then numeric code) so the hot path builds no key.
 */
import type { ServerResponse } from 'node:http';
import type { UpdateServerMetrics } from './metrics.js';

interface PendingCount<L> {
  readonly labels: L;
  n: number;
}

export class RequestMetrics {
  private readonly requestCounts = new Map<
    string,
    Map<number, PendingCount<{ route: string; code: string }>>
  >();
  private readonly durations = new Map<string, { observe(v: number): void }>();
  /** Bounded: app ids come from loaded indexes (or `_unknown`), answers from a fixed set of codes. */
  private readonly answerCounts = new Map<
    string,
    Map<string, PendingCount<{ app_id: string; answer: string }>>
  >();
  private answerCountCells = 0;

  constructor(private readonly metrics: UpdateServerMetrics) {
    metrics.onCollect(() => this.flush());
  }

  record(route: string, code: number, seconds: number): void {
    let byCode = this.requestCounts.get(route);
    if (!byCode) {
      byCode = new Map();
      this.requestCounts.set(route, byCode);
    }
    let cell = byCode.get(code);
    if (!cell) {
      cell = { labels: { route, code: String(code) }, n: 0 };
      byCode.set(code, cell);
    }
    cell.n++;
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
    let byAnswer = this.answerCounts.get(app);
    let cell = byAnswer?.get(answer);
    if (!cell) {
      if (this.answerCountCells > 50_000) {
        this.flush();
        this.answerCounts.clear();
        this.answerCountCells = 0;
        byAnswer = undefined;
      }
      if (!byAnswer) {
        byAnswer = new Map();
        this.answerCounts.set(app, byAnswer);
      }
      cell = { labels: { app_id: app, answer }, n: 0 };
      byAnswer.set(answer, cell);
      this.answerCountCells++;
    }
    cell.n++;
  }

  /** Adds the counts since the last flush to the prom-client counters. */
  flush(): void {
    for (const byCode of this.requestCounts.values()) {
      for (const cell of byCode.values()) {
        if (cell.n === 0) continue;
        this.metrics.requests.inc(cell.labels, cell.n);
        cell.n = 0;
      }
    }
    for (const byAnswer of this.answerCounts.values()) {
      for (const cell of byAnswer.values()) {
        if (cell.n === 0) continue;
        this.metrics.updateAnswers.inc(cell.labels, cell.n);
        cell.n = 0;
      }
    }
  }
}
