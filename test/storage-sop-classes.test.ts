// The Storage SOP Class list: the classes a modality sends are in it, other services' SOP classes are not.
import { expect } from 'chai';
import { STORAGE_SOP_CLASSES, isStorageSopClass } from '../src/scp/storage-sop-classes.js';

describe('storage SOP classes', () => {
  const present: Record<string, string> = {
    '1.2.840.10008.5.1.4.1.1.2': 'CTImageStorage',
    '1.2.840.10008.5.1.4.1.1.2.1': 'EnhancedCTImageStorage',
    '1.2.840.10008.5.1.4.1.1.3.1': 'UltrasoundMultiFrameImageStorage',
    '1.2.840.10008.5.1.4.1.1.4': 'MRImageStorage',
    '1.2.840.10008.5.1.4.1.1.7': 'SecondaryCaptureImageStorage',
    '1.2.840.10008.5.1.4.1.1.9.1.1': 'TwelveLeadECGWaveformStorage',
    '1.2.840.10008.5.1.4.1.1.77.1.6': 'VLWholeSlideMicroscopyImageStorage',
    '1.2.840.10008.5.1.4.1.1.88.34': 'Comprehensive3DSRStorage',
    '1.2.840.10008.5.1.4.1.1.104.1': 'EncapsulatedPDFStorage',
    '1.2.840.10008.5.1.4.1.1.481.3': 'RTStructureSetStorage',
    '1.2.840.10008.5.1.4.1.1.481.5': 'RTPlanStorage',
    // non-patient objects, RT delivery instructions and a retired class
    '1.2.840.10008.5.1.4.38.1': 'HangingProtocolStorage',
    '1.2.840.10008.5.1.4.39.1': 'ColorPaletteStorage',
    '1.2.840.10008.5.1.4.43.1': 'GenericImplantTemplateStorage',
    '1.2.840.10008.5.1.4.34.7': 'RTBeamsDeliveryInstructionStorage',
    '1.2.840.10008.5.1.4.1.1.200.3': 'ProtocolApprovalStorage',
    '1.2.840.10008.5.1.4.1.1.6': 'UltrasoundImageStorageRetired',
  };

  const absent: Record<string, string> = {
    '1.2.840.10008.1.1': 'Verification',
    '1.2.840.10008.5.1.4.1.2.2.1': 'Study Root Q/R FIND',
    '1.2.840.10008.5.1.4.31': 'Modality Worklist FIND',
    '1.2.840.10008.1.20.1': 'Storage Commitment Push Model',
    '1.2.840.10008.1.3.10': 'Media Storage Directory Storage',
    '1.2.840.10008.4.2': 'Storage Service Class',
  };

  for (const [uid, keyword] of Object.entries(present)) {
    it(`has ${keyword} (${uid})`, () => {
      expect(isStorageSopClass(uid)).to.equal(true);
      expect(STORAGE_SOP_CLASSES.get(uid)).to.equal(keyword);
    });
  }

  for (const [uid, name] of Object.entries(absent)) {
    it(`does not have ${name} (${uid})`, () => {
      expect(isStorageSopClass(uid)).to.equal(false);
      expect(STORAGE_SOP_CLASSES.has(uid)).to.equal(false);
    });
  }

  it('has at least 150 entries, all well-formed standard UIDs with keyword names', () => {
    expect(STORAGE_SOP_CLASSES.size).to.be.at.least(150);
    for (const [uid, keyword] of STORAGE_SOP_CLASSES) {
      expect(uid).to.match(/^1\.2\.840\.10008(\.(0|[1-9][0-9]*))+$/);
      expect(keyword).to.match(/^[A-Za-z0-9]+Storage[A-Za-z0-9]*$/);
    }
  });

  it('is sorted by UID, component by component', () => {
    const uids = [...STORAGE_SOP_CLASSES.keys()];
    const cmp = (a: string, b: string): number => {
      const x = a.split('.').map(Number);
      const y = b.split('.').map(Number);
      for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
      return x.length - y.length;
    };
    expect(uids).to.deep.equal([...uids].sort(cmp));
  });

  it('ignores trailing NUL or space padding but nothing else', () => {
    expect(isStorageSopClass('1.2.840.10008.5.1.4.1.1.2\0')).to.equal(true);
    expect(isStorageSopClass('1.2.840.10008.5.1.4.1.1.2 ')).to.equal(true);
    expect(isStorageSopClass('1.2.840.10008.5.1.4.1.1.2.9')).to.equal(false);
    expect(isStorageSopClass('')).to.equal(false);
  });
});
