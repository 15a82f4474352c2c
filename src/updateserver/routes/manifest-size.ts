/** `POST {update}/manifest_size` (CAPGO-PROTOCOL.md §2.6): sizes of the delta files a device still misses. */
import type { Express } from 'express';
import { isPlainObject, parseDeviceInfo, RequestError } from '../device-request.js';
import { sendJson } from '../respond.js';
import { timed, type RouteContext } from '../route-context.js';

type JsonObject = Record<string, unknown>;

export function mountManifestSize(app: Express, ctx: RouteContext): void {
  app.post(
    `${ctx.paths.update}/manifest_size`,
    ctx.admission.limitAddress,
    ctx.smallJson,
    timed(ctx, 'manifest_size', (req, res) => {
      const info = parseDeviceInfo(req.body);
      if (!ctx.admission.admitDevice(res, info.deviceId)) return;
      const app = ctx.indexes.app(info.appId);
      if (!app) return ctx.answers.unknownApp(res, info.appId);
      const body = req.body as JsonObject;
      const version = body['version'];
      const manifest = body['manifest'];
      if (typeof version !== 'string' || version.length > 256)
        throw new RequestError(400, 'invalid_json_body', 'version must be a string');
      if (!Array.isArray(manifest) || manifest.length > 10_000) {
        throw new RequestError(
          400,
          'invalid_json_body',
          'manifest must be an array of at most 10000 entries',
        );
      }
      const bundle = Object.values(app.index.bundles).find((b) => b.version === version);
      const byName = new Map((bundle?.manifest ?? []).map((f) => [f.fileName, f]));
      let totalSize = 0;
      let known = 0;
      const files = manifest.map((raw) => {
        const e = isPlainObject(raw) ? raw : {};
        const fileName = typeof e['file_name'] === 'string' ? e['file_name'] : '';
        const fileHash = typeof e['file_hash'] === 'string' ? e['file_hash'] : '';
        const entry = byName.get(fileName);
        const out: JsonObject = {
          file_name: fileName,
          file_hash: fileHash,
          download_url: entry ? ctx.answers.publicUrlFor(entry.objectKey) : '',
        };
        if (entry && (fileHash === '' || fileHash.toLowerCase() === entry.fileHash.toLowerCase())) {
          out['size'] = entry.size;
          totalSize += entry.size;
          known++;
        } else {
          out['error'] = bundle ? 'file_not_found' : 'version_not_found';
        }
        return out;
      });
      sendJson(res, 200, { totalSize, knownFiles: known, unknownFiles: files.length - known, files });
    }),
  );
}
