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

/** The info-object fields and the rules `device-request.ts` applies to them (Capgo's plugin_validation.ts). */
const DEVICE_INFO_FIELDS: Record<string, Record<string, unknown>> = {
  platform: { enum: ['ios', 'android', 'electron'] },
  device_id: {
    type: 'string',
    maxLength: 36,
    pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
    description: 'a UUID, lower-cased by the service',
  },
  app_id: { type: 'string', maxLength: 255, pattern: '^[a-zA-Z0-9]+(\\.[\\w-]+)+$' },
  custom_id: { type: 'string', maxLength: 256 },
  version_build: {
    type: 'string',
    maxLength: 256,
    description:
      'native version; "1" and "1.2" are read as 1.0.0 and 1.2.0, anything else that is not semver is 400 semver_error',
  },
  version_code: { type: 'string', maxLength: 256 },
  version_os: { type: 'string', maxLength: 256 },
  version_name: { type: 'string', maxLength: 256 },
  plugin_version: {
    type: 'string',
    maxLength: 128,
    pattern:
      '^v?(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(?:-[0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*)?(?:\\+[0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*)?$',
  },
  is_emulator: { ...bool, default: false },
  is_prod: { ...bool, default: true },
  install_source: { type: 'string', maxLength: 64 },
  defaultChannel: { type: 'string', maxLength: 256, description: 'device-visible channel name' },
  key_id: { type: 'string', maxLength: 20 },
};

export function openApiDocument(paths: DevicePaths): Record<string, unknown> {
  const errorRef = { $ref: '#/components/schemas/ErrorAnswer' };
  const json = (schema: unknown): unknown => ({ 'application/json': { schema } });
  const errorResponses = {
    '400': {
      description:
        'Refused request, as Capgo answers it: invalid_json_body (empty body, or a field that breaks the schema; the message names it), invalid_query_parameters (GET/DELETE), invalid_json_parse_body, missing_device_id, missing_app_id, semver_error (version_build does not coerce to semver), invalid_app_id (stats), too_many_events',
      content: json(errorRef),
    },
    '404': {
      description:
        'app_not_found: the app is not served by this service (Capgo: 429 on_premise_app, ADR 0005). Unknown paths and methods are 404 not_found, as Capgo (no 405).',
      content: json(errorRef),
    },
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
  const infoQuery = (required: readonly string[]): unknown[] =>
    [
      'app_id',
      'device_id',
      'platform',
      'custom_id',
      'version_build',
      'version_name',
      'version_os',
      'plugin_version',
      'defaultChannel',
      'channel',
      'is_emulator',
      'is_prod',
      'key_id',
    ].map((name) => ({
      name,
      in: 'query',
      required: required.includes(name),
      schema:
        name === 'is_emulator' || name === 'is_prod'
          ? { enum: ['true', 'false'], description: 'only "true" is true' }
          : (DEVICE_INFO_FIELDS[name] ?? str),
    }));
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
                'An update or a non-update answer (no_channel when defaultChannel names no channel the device may use or the platform has no public channel; already_on_builtin, with version "builtin" when the device runs a downloaded bundle, when the channel serves the builtin bundle)',
              content: json({ oneOf: [{ $ref: '#/components/schemas/UpdateAvailable' }, errorRef] }),
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
              description:
                'A single event: {status:"ok"}. A batch: {status:"ok", results} with one result per event (an invalid event gets its error at its index; an empty batch results: []), or the whole batch refused with {error: "mixed_app_ids" | "invalid_app_id", message}',
              content: json({
                oneOf: [
                  {
                    type: 'object',
                    required: ['status'],
                    properties: {
                      status: { const: 'ok' },
                      results: {
                        type: 'array',
                        items: {
                          type: 'object',
                          required: ['status', 'index'],
                          properties: {
                            status: { enum: ['ok', 'error'] },
                            index: { type: 'integer' },
                            error: str,
                            message: str,
                          },
                        },
                      },
                    },
                  },
                  errorRef,
                ],
              }),
            },
            ...errorResponses,
          },
        },
      },
      [paths.channel]: {
        post: {
          summary:
            'setChannel: check that the device may select a channel by its device-visible name (plugins >= 5.34/6.34/7.34 store it and send it as defaultChannel)',
          requestBody: {
            required: true,
            content: json({
              allOf: [
                { $ref: '#/components/schemas/ChannelInfo' },
                { type: 'object', properties: { channel: str } },
              ],
            }),
          },
          responses: {
            '200': {
              description:
                '{status:"ok", allowSet:true} ({status:"ok"} for legacy plugins), or missing_channel / channel_not_found / public_channel_self_set_not_allowed / channel_self_set_not_allowed / cannot_override (legacy plugin on a pinned channel)',
              content: json({
                oneOf: [{ type: 'object', properties: { status: str, allowSet: bool } }, errorRef],
              }),
            },
            ...errorResponses,
          },
        },
        put: {
          summary:
            'getChannel: "override" with the channel the body carries (or an owner pin), else "default" with defaultChannel or the platform\'s public channel',
          requestBody: { required: true, content: json({ $ref: '#/components/schemas/ChannelInfo' }) },
          responses: {
            '200': {
              description: 'Channel, or channel_not_found (legacy plugins)',
              content: json({
                oneOf: [
                  {
                    type: 'object',
                    required: ['channel', 'status'],
                    properties: { channel: str, status: { enum: ['default', 'override'] }, allowSet: bool },
                  },
                  errorRef,
                ],
              }),
            },
            ...errorResponses,
          },
        },
        get: {
          summary:
            'listChannels: public and self-assignable channels serving the platform, emulator/physical device and prod/dev build of the query (device_id optional)',
          parameters: infoQuery(['app_id', 'platform']),
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
          summary: 'unsetChannel of plugins older than 5.34/6.34/7.34; current plugins get {status:"ok"}',
          parameters: infoQuery(['app_id', 'device_id', 'platform', 'version_name', 'version_build']),
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
          description:
            'Update-check body. JSON null is not a string. version_name "builtin" means version_build. Extra fields are allowed (at most 64 in all).',
          required: ['platform', 'device_id', 'app_id', 'version_build', 'version_name', 'plugin_version'],
          maxProperties: 64,
          properties: {
            ...DEVICE_INFO_FIELDS,
            version_build: { ...DEVICE_INFO_FIELDS['version_build'], minLength: 1 },
            version_name: { ...DEVICE_INFO_FIELDS['version_name'], minLength: 1 },
          },
        },
        ChannelInfo: {
          type: 'object',
          description:
            '/channel_self body: as DeviceInfo, but version_name/version_build may be empty and a missing plugin_version means a legacy plugin (< 5.34/6.34/7.34)',
          required: ['platform', 'device_id', 'app_id', 'version_build', 'version_name'],
          maxProperties: 64,
          properties: { ...DEVICE_INFO_FIELDS, channel: { type: 'string', maxLength: 256 } },
        },
        StatsEvent: {
          type: 'object',
          description: 'One event, validated on its own (a batch answers each at its index)',
          required: ['device_id', 'app_id', 'platform', 'version_name', 'version_os'],
          properties: {
            ...DEVICE_INFO_FIELDS,
            platform: str,
            custom_id: { type: 'string', maxLength: 36 },
            action: str,
            old_version_name: str,
            timestamp: { type: 'number' },
            metadata: {
              type: 'object',
              maxProperties: 30,
              propertyNames: { maxLength: 64 },
              additionalProperties: { type: 'string', maxLength: 2048 },
            },
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
