import { hashIdentifier } from './hash.js';

describe('hashIdentifier', () => {
  it('is stable, case-insensitive and does not reveal the id', () => {
    const id = '5C0E3A2E-8D43-4A63-9C52-1B1F0F2C9E11';
    expect(hashIdentifier(id)).toBe(hashIdentifier(id.toLowerCase()));
    expect(hashIdentifier(id)).toMatch(/^[0-9a-f]{16}$/);
    expect(hashIdentifier(id)).not.toContain('5c0e3a2e');
    expect(hashIdentifier('a')).not.toBe(hashIdentifier('b'));
  });
});
