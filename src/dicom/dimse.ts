// dcmjs-dimse, quietened: its INFO/ERROR lines name AE titles and UIDs per PDU; DPHIANT logs what matters itself.
import dimse from 'dcmjs-dimse';

dimse.log.setLevel('silent');

export default dimse;
