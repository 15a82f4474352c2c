/**
 * OpenAPI 3.1 description of the device API, served at `/openapi.json` with the configured paths and committed as
 * `docs/openapi/device-api.json` (default paths; a unit test keeps the two identical).
 */
export interface DevicePaths {
  update: string;
  stats: string;
  channel: string;
  bundles: string;
}

const str = { type: 'string' } as const;
const bool = { type: 'boolean' } as const;

export function openApiDocument(paths: DevicePaths): Record<string, unknown> {
  const errorRef = { $ref: '#/components/schemas/ErrorAnswer' };
  const json = (schema: unknown): unknown => ({ 'application/json': { schema } });
  const errorResponses = {
    '400': {
      description:
        'Malformed request (invalid_json_body, invalid_json_parse_body, missing_device_id, missing_app_id, invalid_device_id, invalid_app_id, missing_channel, too_many_events)',
      content: json(errorRef),
    },
    '404': { description: 'app_not_found: the app is not served by this service', content: json(errorRef) },
    '413': { description: 'payload_too_large', content: json(errorRef) },
    '429': {
      description: 'too_many_requests (per device or per client address); devices honour Retry-After',
      headers: { 'Retry-After': { schema: { type: 'integer' }, description: 'seconds' } },
      content: json(errorRef),
    },
    '503': {
      description:
        'app_unavailable: the app is published but its release index cannot be used right now (this app only; the detail is on the admin port); retry after Retry-After',
      headers: { 'Retry-After': { schema: { type: 'integer' }, description: 'seconds' } },
      content: json(errorRef),
    },
  };
  const infoQuery = [
    'app_id',
    'device_id',
    'platform',
    'custom_id',
    'version_build',
    'version_name',
    'plugin_version',
    'defaultChannel',
    'is_emulator',
    'is_prod',
  ].map((name) => ({ name, in: 'query', required: name === 'app_id' || name === 'device_id', schema: str }));
  return {
    openapi: '3.1.0',
    info: {
      title: 'liveupdate-operator device API',
      version: 'v1',
      description:
        "Capgo's live-update device protocol as served by the liveupdate-operator update service (see CAPGO-PROTOCOL.md). " +
        'Non-update answers carry {error, message, kind} and use HTTP 200 unless listed otherwise.',
    },
    paths: {
      [paths.update]: {
        post: {
          summary: 'Update check',
          requestBody: { required: true, content: json({ $ref: '#/components/schemas/DeviceInfo' }) },
          responses: {
            '200': {
              description:
                'An update, a reset to the builtin bundle ({"version":"builtin"}), or a non-update answer',
              content: json({
                oneOf: [
                  { $ref: '#/components/schemas/UpdateAvailable' },
                  { $ref: '#/components/schemas/Reset' },
                  errorRef,
                ],
              }),
            },
            ...errorResponses,
          },
        },
      },
      [`${paths.update}/manifest_size`]: {
        post: {
          summary: 'Download size of the delta files a device still misses',
          requestBody: {
            required: true,
            content: json({
              allOf: [
                { $ref: '#/components/schemas/DeviceInfo' },
                {
                  type: 'object',
                  required: ['version', 'manifest'],
                  properties: {
                    version: str,
                    manifest: {
                      type: 'array',
                      maxItems: 10000,
                      items: { $ref: '#/components/schemas/ManifestEntry' },
                    },
                  },
                },
              ],
            }),
          },
          responses: {
            '200': {
              description: 'Sizes',
              content: json({
                type: 'object',
                properties: {
                  totalSize: { type: 'integer' },
                  knownFiles: { type: 'integer' },
                  unknownFiles: { type: 'integer' },
                  files: {
                    type: 'array',
                    items: {
                      type: 'object',
                      properties: {
                        file_name: str,
                        file_hash: str,
                        download_url: str,
                        size: { type: 'integer' },
                        error: str,
                      },
                    },
                  },
                },
              }),
            },
            ...errorResponses,
          },
        },
      },
      [paths.stats]: {
        post: {
          summary: 'Device events (a batch array, or a single event object)',
          requestBody: {
            required: true,
            content: json({
              oneOf: [
                { type: 'array', maxItems: 500, items: { $ref: '#/components/schemas/StatsEvent' } },
                { $ref: '#/components/schemas/StatsEvent' },
              ],
            }),
          },
          responses: {
            '200': {
              description: 'Accepted',
              content: json({ type: 'object', properties: { status: { const: 'ok' } } }),
            },
            ...errorResponses,
          },
        },
      },
      [paths.channel]: {
        post: {
          summary:
            'setChannel: check that the device may select a channel (the device stores it and sends it as defaultChannel)',
          requestBody: {
            required: true,
            content: json({
              allOf: [
                { $ref: '#/components/schemas/DeviceInfo' },
                { type: 'object', required: ['channel'], properties: { channel: str } },
              ],
            }),
          },
          responses: {
            '200': {
              description:
                '{status:"ok", allowSet:true} or channel_not_found / channel_self_set_not_allowed / cannot_override',
              content: json({
                oneOf: [{ type: 'object', properties: { status: str, allowSet: bool } }, errorRef],
              }),
            },
            ...errorResponses,
          },
        },
        put: {
          summary: 'getChannel: the channel this device resolves to',
          requestBody: { required: true, content: json({ $ref: '#/components/schemas/DeviceInfo' }) },
          responses: {
            '200': {
              description: 'Channel',
              content: json({
                type: 'object',
                properties: { channel: str, status: { enum: ['default', 'override'] }, allowSet: bool },
              }),
            },
            ...errorResponses,
          },
        },
        get: {
          summary: 'listChannels: channels a device may select',
          parameters: infoQuery,
          responses: {
            '200': {
              description: 'A bare array',
              content: json({
                type: 'array',
                items: {
                  type: 'object',
                  required: ['id', 'name'],
                  properties: { id: { type: 'integer' }, name: str, public: bool, allow_self_set: bool },
                },
              }),
            },
            ...errorResponses,
          },
        },
        delete: {
          summary:
            'unsetChannel of plugins older than 5.34/6.34/7.34 (self-selected channels live on the device)',
          parameters: infoQuery,
          responses: {
            '200': { description: '{status:"ok"} or cannot_override', content: json({ type: 'object' }) },
            ...errorResponses,
          },
        },
      },
      [`${paths.bundles}/{objectKey}`]: {
        get: {
          summary: 'Bundle zip or delta file referenced by a loaded release index',
          parameters: [
            {
              name: 'objectKey',
              in: 'path',
              required: true,
              schema: str,
              description: 'object key, may contain slashes',
            },
            { name: 'Range', in: 'header', schema: str, description: 'a single bytes range' },
            { name: 'If-None-Match', in: 'header', schema: str },
          ],
          responses: {
            '200': {
              description: 'The object',
              headers: { ETag: { schema: str }, 'Content-Length': { schema: { type: 'integer' } } },
              content: { 'application/octet-stream': {} },
            },
            '206': { description: 'Partial content', headers: { 'Content-Range': { schema: str } } },
            '304': { description: 'Not modified' },
            '404': { description: 'Not referenced by any loaded index', content: json(errorRef) },
            '416': { description: 'Range not satisfiable', content: json(errorRef) },
            '503': {
              description: 'Object store unavailable',
              headers: { 'Retry-After': { schema: { type: 'integer' } } },
              content: json(errorRef),
            },
          },
        },
      },
      '/healthz': { get: { summary: 'Liveness', responses: { '200': { description: 'ok' } } } },
      '/readyz': {
        get: {
          summary: 'Readiness: the release index was loaded',
          responses: { '200': { description: 'ready' }, '503': { description: 'not ready, with a reason' } },
        },
      },
    },
    components: {
      schemas: {
        DeviceInfo: {
          type: 'object',
          required: ['platform', 'device_id', 'app_id', 'version_build', 'version_name', 'plugin_version'],
          maxProperties: 64,
          properties: {
            platform: { enum: ['ios', 'android', 'electron'] },
            device_id: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' },
            app_id: {
              type: 'string',
              maxLength: 255,
              pattern: '^[A-Za-z0-9_][A-Za-z0-9_-]*(\\.[A-Za-z0-9_-]+)+$',
            },
            custom_id: { type: 'string', maxLength: 256 },
            version_build: { type: 'string', maxLength: 256 },
            version_code: { type: 'string', maxLength: 256 },
            version_os: { type: 'string', maxLength: 256 },
            version_name: { type: 'string', maxLength: 256 },
            plugin_version: { type: 'string', maxLength: 256 },
            is_emulator: bool,
            is_prod: bool,
            install_source: str,
            defaultChannel: { type: 'string', maxLength: 256 },
            key_id: { type: 'string', maxLength: 64 },
          },
        },
        StatsEvent: {
          type: 'object',
          required: ['device_id', 'app_id', 'action', 'version_name'],
          properties: {
            device_id: str,
            app_id: str,
            action: str,
            version_name: str,
            old_version_name: str,
            timestamp: { type: 'number' },
            metadata: { type: 'object', additionalProperties: str },
          },
        },
        ManifestEntry: { type: 'object', properties: { file_name: str, file_hash: str, download_url: str } },
        UpdateAvailable: {
          type: 'object',
          required: ['version', 'url', 'checksum'],
          not: { anyOf: [{ required: ['error'] }, { required: ['kind'] }, { required: ['message'] }] },
          properties: {
            version: str,
            url: { type: 'string', format: 'uri' },
            checksum: str,
            session_key: str,
            manifest: { type: 'array', minItems: 1, items: { $ref: '#/components/schemas/ManifestEntry' } },
            link: str,
            comment: str,
            breaking: bool,
          },
        },
        Reset: { type: 'object', required: ['version'], properties: { version: { const: 'builtin' } } },
        ErrorAnswer: {
          type: 'object',
          required: ['error', 'message', 'kind'],
          properties: {
            error: str,
            message: str,
            kind: { enum: ['up_to_date', 'blocked', 'failed'] },
            version: str,
            old: str,
            major: bool,
            deviceKeyId: str,
            bundleKeyId: str,
          },
        },
      },
    },
  };
}
