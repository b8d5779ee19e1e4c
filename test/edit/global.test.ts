/**
 * Global directions parity against the reference fixtures (StyleCLIP's global_torch code on the fixture
 * generator and CLIP): channel statistics (N = 200), Δt, every boundary and the channel count (fs3.npy,
 * 'smiling face' vs 'face', β 0.15), the α = 4 edit, and the fs3 precompute (K = 4), run interrupted and
 * resumed. Also the loaders of official files.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  Fs3CheckpointMismatch,
  Fs3Interrupted,
  getFs,
  precomputeFs3,
  renderToClipInput,
} from '../../src/edit/fs3.js';
import {
  applyBoundary,
  DIRECTION_CACHE_SIZE,
  fs3Layout,
  fs3Rows,
  GlobalEditor,
  globalBoundary,
  renderStyles,
  type StyleStats,
  sampleStyleStats,
  selectLayers,
  stylesFromWplus,
} from '../../src/edit/global.js';
import { loadFs3, loadStyleStats, saveStyleStats } from '../../src/edit/global-io.js';
import { readNpy, readNpyF32, writeNpy } from '../../src/io/npy.js';
import { float32ToHalf } from '../../src/io/tensor.js';
import { ClipEncoder } from '../../src/models/clip/encoder.js';
import { loadClip } from '../../src/models/clip/load.js';
import { loadGenerator } from '../../src/models/stylegan2/load.js';
import type { GeneratorWeights } from '../../src/models/stylegan2/weights.js';
import { randomGeneratorWeights } from '../../src/models/stylegan2/weights.js';
import { assertClose } from '../helpers.js';

const fx = new URL('../fixtures/', import.meta.url).pathname;
const f32 = (p: string) => readNpyF32(`${fx}${p}`).data;
const nn = (i: number) => String(i).padStart(2, '0');

/** StyleCLIP-style S_mean_std pickles made with numpy 2.4 from the fixture's code_mean/code_std: [m, std]
 * (protocol 4) and (None, m + [extra layer], std + [extra layer]) (protocol 2). */
const S_MEAN_STD_P4 =
  'gASVPw8AAAAAAABdlChdlCiMFm51bXB5Ll9jb3JlLm11bHRpYXJyYXmUjAxfcmVjb25zdHJ1Y3SUk5SMBW51bXB5lIwHbmRhcnJheZSTlEsAhZRDAWKUh5RSlChLAUsghZRoBYwFZHR5cGWUk5SMAmY0lImIh5RSlChLA4wBPJROTk5K/////0r/////SwB0lGKJQ4DmxBFAXFKGP/an97/d1aY/DdHCP3NUwD/2chFAcZIaQOCr2j92B7A/kzjiP3X1kL4UuF4/+FFhP73r8D0OBYE/mDMwvR3aGz8EdXk/KnwwP9LnP70uFbc/fI+1PuxScz8z9yg/IWk9v5gMID8Mv6g/vdhzP3F05T8xH8I/nnsWP5R0lGJoBGgHSwCFlGgJh5RSlChLAUsghZRoEYlDgGBsy74B8LA/KUB2PiFp1T8dkSc/7vVKP60doz4ugTQ+t2fDPbxihD9BbPg+AKyxP0MjWj8kHvI/MIyPP50eAT/UGtE/tit4PsQrpj8o4Bg/DFoTPaAlaj/WARw+Onk9PwILmT/SkJ0/4ycbvtqGiD9eV40/xF18P3GKRj67Tcg/lHSUYmgEaAdLAIWUaAmHlFKUKEsBSyCFlGgRiUOAnpehP2NxsT7bSac/kWnfP8gvNr0GNxQ/yVloP7FZvz9INXq/I1mBP3/NFj/mSu4+pbPLP+G7Uz82B1I/5DmbP7LYaz/tdQs/Efy1Pronhz9EMLo/PfKrvWYn8z+UxMk/hvDQPgtlEz9xpIQ/jOEMQGQ3+z9Nvay81iR7P/dJUT+UdJRiaARoB0sAhZRoCYeUUpQoSwFLIIWUaBGJQ4Avxd0+iaDuP+MLXj+azq4/ITSPP1GC9j7cCcc/cvXTP6oFwj97FIQ+pec7Po9+oz+YQo4/QDJwP1pRrT83Fik/SW0uP4UkPz/9ejs/O9kRP7FoBUCPROc/b0izPiparT9/SrI/xhqqP2hfBUDIAAI/7dgEQO9avD/0Zjo/11jpP5R0lGJoBGgHSwCFlGgJh5RSlChLAUsghZRoEYlDgFbMwz/hKHA/duLCPzDlBz/FhbY/qcfUPxNpXT+Rw5U/imEIP0ps1D/hvh09VosuQESTAkD0o4A/2PbeP5ioVD9q3rM/4peAPl//hT86QnA+ZQ8QP2Segz/fxtw9gQJqP461XD4N5l8/cY+mP58Pkz8JU7E+qUNhPxzVgz66Chs/lHSUYmgEaAdLAIWUaAmHlFKUKEsBSyCFlGgRiUOAjpvgPnHMB79kAkE/Fxu1P2SdnT4Bw70/01hHP8bqnT+FyYM+nc6gP0cimj9mCU8/pR+3Pw4GUz+4ss4/6s4cP7TNID68U0g/cRQGQCPsGz8DWaY/1rmHP5M6AEDcUvE+xKFOP9qBvz+3yWA/PEDHPqan0j8vVlc+KE3hP4yBMz+UdJRiaARoB0sAhZRoCYeUUpQoSwFLIIWUaBGJQ4Dlev8/GiO3P43G/T88/8o/+MtAPvNZ1j/U2RlAwUurPoOAqT5s86s/jTgmQGFVYT+2AzI+3vmdP02p7j+SR2Q+UvcvP1yRuD8DqUQ/KIjMP27ylT9jl6Y/qiG1P+jQhD2UgYM/Uj6xP/9SjT9aMo0/Tcy1PxF5kD/OoOU/jg6+P5R0lGJoBGgHSwCFlGgJh5RSlChLAUsghZRoEYlDgODD8T9EbEu+rW+GP/3Ndj/MQoQ/Gj2EPwrfoj/6suw+xN3UPwOs5T+brS0/VMnOP84dFD/xhJE/8QW4P0W4Uz9uFGo/DsMJv1jojj9qmgdAzT6xP+gnsz+KuRo/avm7P95ykz5M7JM/CTC5P3rf/D9/RwA/CKY3vnQBEkCmn7I/lHSUYmgEaAdLAIWUaAmHlFKUKEsBSyCFlGgRiUOAiqhXPguJoD94A2I/tRSTPo3Pnz/B5Uk/uCiHPznfij/Ke48/RfUhP25fAkATDjE/GM+WP31Fcj7BOGc/I9liPx/PdT9TN4M/kaiDP4FNDj0PAYM/mrc9PrEuvz9JyMo/L0ObP32zJz8KdrA/PEEdPhHpyD/7Rs0/uLJHP1JG8j6UdJRiaARoB0sAhZRoCYeUUpQoSwFLEIWUaBGJQ0A0yEE+QsqSP1851z80GjM/d7IbP7f1uD5tRAdAT+T6Pk7xrj/tivi9zCR7P37ACD+A+fA/6JerP7uDkD+GmEW/lHSUYmgEaAdLAIWUaAmHlFKUKEsBSxCFlGgRiUNAR9UXPxs5nT+bkoA/G5SMP2xlJj/A798/YKtrP3EsJz+hYW8/xUlDP70DlT+GDIs/zh03Pwg/5D/qwT4/zdcJQJR0lGJoBGgHSwCFlGgJh5RSlChLAUsQhZRoEYlDQKgAaD9AxG0+UUbOP33VuT4B9I0/nxK2PwnpRT/tCQJAjFqaP7HPij9NWBU/bt+JP0FbbD/srys/S+WRP9p/A0CUdJRiaARoB0sAhZRoCYeUUpQoSwFLEIWUaBGJQ0DOXyk/ABnzPzxHuz+T2eM+SqU/P0gNu72FV4U/jv7HP+YqwT8f9Vs+k3efP/t7MD/3fmi/o/mSPxN8nT8bvW0/lHSUYmgEaAdLAIWUaAmHlFKUKEsBSxCFlGgRiUNAV55sPvJQyD4uvek/0DOAP8ECmj+UxAxAP0WTP4jQ2z98TwdAUq5aP5+5pz+tJQRARCnBP5zuDkAzxWc+IaihP5R0lGJlXZQoaARoB0sAhZRoCYeUUpQoSwFLIIWUaBGJQ4DESSc/TI0UP3Q9Ij+3MAQ/zpAdP7FpFz8NNhg/d6IYP+e1FT+vqx8/rPojP+U/Fz/fzBk/n98oP1MqHD9nIho/KCMiPwUiCz9FiRY/hWYQP5BDKz/3uww/tG0kP27+Iz8g8Bk/0BQeP497Fj9BDRQ/WD4ZPwPLDD83LBs/ORwdP5R0lGJoBGgHSwCFlGgJh5RSlChLAUsghZRoEYlDgDNNFz+B3CI/ScUVP89pGj8quSo/L3wOP7cuFD9vGxM/upkIP0PABD+MYxo/OaYoP8lHID85dBE/vlAjPzzQHT/XIB4/mOcdP2UAIT9sVyc/bYQZP8dhEz8HWx0/VO34Pl/YLD+I8Qw/ZoANPx6SIj80Sio/d9YQPwWWDj86VSA/lHSUYmgEaAdLAIWUaAmHlFKUKEsBSyCFlGgRiUOA1rIbPxr9HD8MhhI/EyMmP7rVFD/QlA4/ATgYP77IHT89/CY/31EMP+O+Cz8MWiI/0Q8nP5QUAT/fRCQ/pT0LP/5ODj8ewzE/Z14MP07QEj/4aSc/qo0fP31PIT+vfRQ/7pglP0qtKz9yJw0/VbEXP9JbCj8Z4RI/N4oMPzdNEz+UdJRiaARoB0sAhZRoCYeUUpQoSwFLIIWUaBGJQ4DSQQ0/vhILP6nDLT/LGi0/880eP6brKD+cpyo/GKYUPwu6HT99sRY/4WkOPxmNFT8lWSM/Cu8RP2HlIz/uTRs/dqomP2KOHz/nbwc/POYVP5APED8+ehY/p5gkP5gTEj95ESk/EtsWP6SkFj9pGhQ/2LwlPw5XID/zQCs/TbgjP5R0lGJoBGgHSwCFlGgJh5RSlChLAUsghZRoEYlDgLbcIz/VMhw/hrQaP25qFD88YhQ/K58TP0PbFz+fQAs/+E0EP9TOMD/dDxs/PsMVPw/oMz/JPR0/W3onP9lqIT8Hth8/idwZP0qhBT+8gik/1DYRP2DwMT+kuRM/6KocP1bYGT9R2R8/hiooP6nOCz/MZgs/bLUdP06YID8n/SY/lHSUYmgEaAdLAIWUaAmHlFKUKEsBSyCFlGgRiUOALi82PxKHDj/SAiM/lwEIPzOwKz9VKQ8/848VPw0RIj+cZiI/uW4oP2YhEz8DiQU/FmcOPywMDz/UtRI/Yu8VP6NCCz/Btxg/UMQYPxykET/z9RE/VlAoP1niHz9/PzY/+NYmPwTTEz/DORM/kyYVPzk+GD95HBs/4ZUcP+XDIz+UdJRiaARoB0sAhZRoCYeUUpQoSwFLIIWUaBGJQ4AOOBs/Et8KPxHY9D4mBw8/zkYIP75HCD+PcBc/9RUkP+XpDj87jBA/6G4lPy/IGD/7zw4/AdIUP9j9HD/bpBM/2bciP7vrKD/LESI/RQQoP99NEj/PkSg/RBoZP2ybFT8CiQk/2ZIXP/VDJD82bi0/cS8ZP5kpJD/3NRM/FfMUP5R0lGJoBGgHSwCFlGgJh5RSlChLAUsghZRoEYlDgMocFT+sjwo/o3YNP8ZHDj9oahU/eIYZP95HHD/4pCQ/NuADPybvIT/Wags/d+0nP6U8Fj+XBQ0/2YUJPwSWFj+lChU/b7sYP6seFj+5/BQ/S80YP94ZCj+wtgo/CnMbP/08Dz8wmRY/GVsXP2mIEj/oNhA/nD4zP1SPGD+OkQk/lHSUYmgEaAdLAIWUaAmHlFKUKEsBSyCFlGgRiUOA7JsePx7rED9tGy0/h7QuP1czIT+u1hQ/AcoWP6esBT+JSAc/9AEeP7zsHz+V9BQ/T6MGPyOyJD8c7RI/tREOPxVLFz9SzyU/cbQgPysXED/ncyc/TPgMPzUYHD+GpCE/ufMiP/nMFj+5ZTE/JDoYP6Q+Ij8QCA4/KUcmP/7CIz+UdJRiaARoB0sAhZRoCYeUUpQoSwFLEIWUaBGJQ0C+/w4/8x4dP1vKGD9svg4/1ysSP/smJT9uWBo/ExcNP1PGCj+T7go/d00hP6o4KT8BTw8/5B4FP99ODz+aXRs/lHSUYmgEaAdLAIWUaAmHlFKUKEsBSxCFlGgRiUNAScoUPwTQHz/eTxw/gUYSP8EiKD97DA4/xZsRPxbPHT9L6CM/1hwbP/LjDT9FTRA/C+InP7zZET/EsCE/0pQXP5R0lGJoBGgHSwCFlGgJh5RSlChLAUsQhZRoEYlDQBiIFj816xc/JycOPz1kFD+f6BI/r5gfP54XHD9VIxw/ZRwXP/6zGz/gFBs/CN4bP11oGj/vABI/DFwcP1OLJD+UdJRiaARoB0sAhZRoCYeUUpQoSwFLEIWUaBGJQ0D9z10/5MBlPylTdj+GmEg//BduP5sAWz9UaIU/wJZdP2G0QT+Nd14/yTl0P7T/dj9r3E8/eyBVPzg6WT/ZEGA/lHSUYmgEaAdLAIWUaAmHlFKUKEsBSxCFlGgRiUNA5HFuP4wCTD8wfFA/HTlfPzqmXD8QQns/Lp9MP5rZPz9cnV4/hQBKPx+zYD+TUl8/WsdjP85NfT/AA18/dF9JP5R0lGJlZS4=';
const S_MEAN_STD_P2 =
  'gAJOXXEAKGNudW1weS5fY29yZS5tdWx0aWFycmF5Cl9yZWNvbnN0cnVjdApxAWNudW1weQpuZGFycmF5CnECSwCFcQNjX2NvZGVjcwplbmNvZGUKcQRYAQAAAGJxBVgGAAAAbGF0aW4xcQaGcQdScQiHcQlScQooSwFLIIVxC2NudW1weQpkdHlwZQpxDFgCAAAAZjRxDYmIh3EOUnEPKEsDWAEAAAA8cRBOTk5K/////0r/////SwB0cRFiiWgEWLIAAADDpsOEEUBcUsKGP8O2wqfDt8K/w53DlcKmPw3DkcOCP3NUw4A/w7ZyEUBxwpIaQMOgwqvDmj92B8KwP8KTOMOiP3XDtcKQwr4UwrheP8O4UWE/wr3Dq8OwPQ4FwoE/wpgzMMK9HcOaGz8EdXk/KnwwP8OSw6c/wr0uFcK3P3zCj8K1PsOsUnM/M8O3KD8haT3Cv8KYDCA/DMK/wqg/wr3DmHM/cXTDpT8xH8OCP8KeexY/cRJoBoZxE1JxFHRxFWJoAWgCSwCFcRZoCIdxF1JxGChLAUsghXEZaA+JaARYrAAAAGBsw4vCvgHDsMKwPylAdj4hacOVPx3CkSc/w67DtUo/wq0dwqM+LsKBND7Ct2fDgz3CvGLChD9BbMO4PgDCrMKxP0MjWj8kHsOyPzDCjMKPP8KdHgE/w5Qaw5E/wrYreD7DhCvCpj8ow6AYPwxaEz3CoCVqP8OWARw+Onk9PwILwpk/w5LCkMKdP8OjJxvCvsOawobCiD9eV8KNP8OEXXw/ccKKRj7Cu03DiD9xGmgGhnEbUnEcdHEdYmgBaAJLAIVxHmgIh3EfUnEgKEsBSyCFcSFoD4loBFi1AAAAwp7Cl8KhP2NxwrE+w5tJwqc/wpFpw58/w4gvNsK9BjcUP8OJWWg/wrFZwr8/SDV6wr8jWcKBP3/DjRY/w6ZKw64+wqXCs8OLP8OhwrtTPzYHUj/DpDnCmz/CssOYaz/DrXULPxHDvMK1PsK6J8KHP0Qwwro/PcOywqvCvWYnw7M/wpTDhMOJP8KGw7DDkD4LZRM/ccKkwoQ/wozDoQxAZDfDuz9Nwr3CrMK8w5Ykez/Dt0lRP3EiaAaGcSNScSR0cSViaAFoAksAhXEmaAiHcSdScSgoSwFLIIVxKWgPiWgEWK0AAAAvw4XDnT7CicKgw64/w6MLXj/CmsOOwq4/ITTCjz9RwoLDtj7DnAnDhz9yw7XDkz/CqgXDgj97FMKEPsKlw6c7PsKPfsKjP8KYQsKOP0AycD9aUcKtPzcWKT9JbS4/woUkPz/DvXo7PzvDmRE/wrFoBUDCj0TDpz9vSMKzPipawq0/f0rCsj/DhhrCqj9oXwVAw4gAAj/DrcOYBEDDr1rCvD/DtGY6P8OXWMOpP3EqaAaGcStScSx0cS1iaAFoAksAhXEuaAiHcS9ScTAoSwFLIIVxMWgPiWgEWLYAAABWw4zDgz/DoShwP3bDosOCPzDDpQc/w4XChcK2P8Kpw4fDlD8TaV0/wpHDg8KVP8KKYQg/SmzDlD/DocK+HT1WwosuQETCkwJAw7TCo8KAP8OYw7bDnj/CmMKoVD9qw57Csz/DosKXwoA+X8O/woU/OkJwPmUPED9kwp7Cgz/Dn8OGw5w9woECaj/CjsK1XD4Nw6ZfP3HCj8KmP8KfD8KTPwlTwrE+wqlDYT8cw5XCgz7CugobP3EyaAaGcTNScTR0cTViaAFoAksAhXE2aAiHcTdScTgoSwFLIIVxOWgPiWgEWLUAAADCjsKbw6A+ccOMB8K/ZAJBPxcbwrU/ZMKdwp0+AcODwr0/w5NYRz/DhsOqwp0/woXDicKDPsKdw47CoD9HIsKaP2YJTz/CpR/Ctz8OBlM/wrjCssOOP8Oqw44cP8K0w40gPsK8U0g/cRQGQCPDrBs/A1nCpj/DlsK5woc/wpM6AEDDnFLDsT7DhMKhTj/DmsKBwr8/wrfDiWA/PEDDhz7CpsKnw5I/L1ZXPihNw6E/wozCgTM/cTpoBoZxO1JxPHRxPWJoAWgCSwCFcT5oCIdxP1JxQChLAUsghXFBaA+JaARYuwAAAMOlesO/Pxojwrc/wo3DhsO9PzzDv8OKP8O4w4tAPsOzWcOWP8OUw5kZQMOBS8KrPsKDwoDCqT5sw7PCqz/CjTgmQGFVYT/CtgMyPsOew7nCnT9NwqnDrj/CkkdkPlLDty8/XMKRwrg/A8KpRD8owojDjD9uw7LClT9jwpfCpj/CqiHCtT/DqMOQwoQ9wpTCgcKDP1I+wrE/w79Swo0/WjLCjT9Nw4zCtT8RecKQP8OOwqDDpT/Cjg7Cvj9xQmgGhnFDUnFEdHFFYmgBaAJLAIVxRmgIh3FHUnFIKEsBSyCFcUloD4loBFi5AAAAw6DDg8OxP0RsS8K+wq1vwoY/w73DjXY/w4xCwoQ/Gj3ChD8Kw5/Coj/DusKyw6w+w4TDncOUPwPCrMOlP8Kbwq0tP1TDicOOP8OOHRQ/w7HChMKRP8OxBcK4P0XCuFM/bhRqPw7DgwnCv1jDqMKOP2rCmgdAw40+wrE/w6gnwrM/worCuRo/asO5wrs/w55ywpM+TMOswpM/CTDCuT96w5/DvD9/RwA/CMKmN8K+dAESQMKmwp/Csj9xSmgGhnFLUnFMdHFNYmgBaAJLAIVxTmgIh3FPUnFQKEsBSyCFcVFoD4loBFitAAAAworCqFc+C8KJwqA/eANiP8K1FMKTPsKNw4/Cnz/DgcOlST/CuCjChz85w5/Cij/DinvCjz9Fw7UhP25fAkATDjE/GMOPwpY/fUVyPsOBOGc/I8OZYj8fw491P1M3woM/wpHCqMKDP8KBTQ49DwHCgz/CmsK3PT7CsS7Cvz9Jw4jDij8vQ8KbP33Csyc/CnbCsD88QR0+EcOpw4g/w7tGw40/wrjCskc/UkbDsj5xUmgGhnFTUnFUdHFVYmgBaAJLAIVxVmgIh3FXUnFYKEsBSxCFcVloD4loBFheAAAANMOIQT5Cw4rCkj9fOcOXPzQaMz93wrIbP8K3w7XCuD5tRAdAT8Okw7o+TsOxwq4/w63CisO4wr3DjCR7P37DgAg/woDDucOwP8OowpfCqz/Cu8KDwpA/wobCmEXCv3FaaAaGcVtScVx0cV1iaAFoAksAhXFeaAiHcV9ScWAoSwFLEIVxYWgPiWgEWFcAAABHw5UXPxs5wp0/wpvCksKAPxvClMKMP2xlJj/DgMOvw58/YMKraz9xLCc/wqFhbz/DhUlDP8K9A8KVP8KGDMKLP8OOHTc/CD/DpD/DqsOBPj/DjcOXCUBxYmgGhnFjUnFkdHFlYmgBaAJLAIVxZmgIh3FnUnFoKEsBSxCFcWloD4loBFhXAAAAwqgAaD9Aw4RtPlFGw44/fcOVwrk+AcO0wo0/wp8SwrY/CcOpRT/DrQkCQMKMWsKaP8Kxw4/Cij9NWBU/bsOfwok/QVtsP8Oswq8rP0vDpcKRP8OafwNAcWpoBoZxa1JxbHRxbWJoAWgCSwCFcW5oCIdxb1JxcChLAUsQhXFxaA+JaARYWwAAAMOOXyk/ABnDsz88R8K7P8KTw5nDoz5KwqU/P0gNwrvCvcKFV8KFP8KOw77Dhz/DpirDgT8fw7VbPsKTd8KfP8O7ezA/w7d+aMK/wqPDucKSPxN8wp0/G8K9bT9xcmgGhnFzUnF0dHF1YmgBaAJLAIVxdmgIh3F3UnF4KEsBSxCFcXloD4loBFhaAAAAV8KebD7DslDDiD4uwr3DqT/DkDPCgD/DgQLCmj/ClMOEDEA/RcKTP8KIw5DDmz98TwdAUsKuWj/Cn8K5wqc/wq0lBEBEKcOBP8Kcw64OQDPDhWc+IcKowqE/cXpoBoZxe1JxfHRxfWJoAWgCSwCFcX5oCIdxf1JxgChLAUsDhXGBaA+JaARYDAAAAAAAAAAAAAAAAAAAAHGCaAaGcYNScYR0cYViZV1xhihoAWgCSwCFcYdoCIdxiFJxiShLAUsghXGKaA+JaARYnQAAAMOESSc/TMKNFD90PSI/wrcwBD/DjsKQHT/CsWkXPw02GD93wqIYP8OnwrUVP8KvwqsfP8Ksw7ojP8OlPxc/w5/DjBk/wp/Dnyg/UyocP2ciGj8oIyI/BSILP0XCiRY/woVmED/CkEMrP8O3wrsMP8K0bSQ/bsO+Iz8gw7AZP8OQFB4/wo97Fj9BDRQ/WD4ZPwPDiww/NywbPzkcHT9xi2gGhnGMUnGNdHGOYmgBaAJLAIVxj2gIh3GQUnGRKEsBSyCFcZJoD4loBFicAAAAM00XP8KBw5wiP0nDhRU/w49pGj8qwrkqPy98Dj/Cty4UP28bEz/CusKZCD9Dw4AEP8KMYxo/OcKmKD/DiUcgPzl0ET/CvlAjPzzDkB0/w5cgHj/CmMOnHT9lACE/bFcnP23ChBk/w4dhEz8HWx0/VMOtw7g+X8OYLD/CiMOxDD9mwoANPx7CkiI/NEoqP3fDlhA/BcKWDj86VSA/cZNoBoZxlFJxlXRxlmJoAWgCSwCFcZdoCIdxmFJxmShLAUsghXGaaA+JaARYoAAAAMOWwrIbPxrDvRw/DMKGEj8TIyY/wrrDlRQ/w5DClA4/ATgYP8K+w4gdPz3DvCY/w59RDD/Do8K+Cz8MWiI/w5EPJz/ClBQBP8OfRCQ/wqU9Cz/Dvk4OPx7DgzE/Z14MP07DkBI/w7hpJz/CqsKNHz99TyE/wq99FD/DrsKYJT9Kwq0rP3InDT9VwrEXP8OSWwo/GcOhEj83wooMPzdNEz9xm2gGhnGcUnGddHGeYmgBaAJLAIVxn2gIh3GgUnGhKEsBSyCFcaJoD4loBFiiAAAAw5JBDT/CvhILP8Kpw4MtP8OLGi0/w7PDjR4/wqbDqyg/wpzCpyo/GMKmFD8LwrodP33CsRY/w6FpDj8Zwo0VPyVZIz8Kw68RP2HDpSM/w65NGz92wqomP2LCjh8/w6dvBz88w6YVP8KQDxA/PnoWP8KnwpgkP8KYExI/eREpPxLDmxY/wqTCpBY/aRoUP8OYwrwlPw5XID/Ds0ArP03CuCM/caNoBoZxpFJxpXRxpmJoAWgCSwCFcadoCIdxqFJxqShLAUsghXGqaA+JaARYpQAAAMK2w5wjP8OVMhw/wobCtBo/bmoUPzxiFD8rwp8TP0PDmxc/wp9ACz/DuE0EP8OUw44wP8OdDxs/PsODFT8Pw6gzP8OJPR0/W3onP8OZaiE/B8K2Hz/CicOcGT9KwqEFP8K8woIpP8OUNhE/YMOwMT/CpMK5Ez/DqMKqHD9Ww5gZP1HDmR8/woYqKD/CqcOOCz/DjGYLP2zCtR0/TsKYID8nw70mP3GraAaGcaxSca10ca5iaAFoAksAhXGvaAiHcbBScbEoSwFLIIVxsmgPiWgEWJ0AAAAuLzY/EsKHDj/DkgIjP8KXAQg/M8KwKz9VKQ8/w7PCjxU/DREiP8KcZiI/wrluKD9mIRM/A8KJBT8WZw4/LAwPP8OUwrUSP2LDrxU/wqNCCz/DgcK3GD9Qw4QYPxzCpBE/w7PDtRE/VlAoP1nDoh8/fz82P8O4w5YmPwTDkxM/w4M5Ez/CkyYVPzk+GD95HBs/w6HClRw/w6XDgyM/cbNoBoZxtFJxtXRxtmJoAWgCSwCFcbdoCIdxuFJxuShLAUsghXG6aA+JaARYowAAAA44Gz8Sw58KPxHDmMO0PiYHDz/DjkYIP8K+Rwg/wo9wFz/DtRUkP8Olw6kOPzvCjBA/w6huJT8vw4gYP8O7w48OPwHDkhQ/w5jDvRw/w5vCpBM/w5nCtyI/wrvDqyg/w4sRIj9FBCg/w59NEj/Dj8KRKD9EGhk/bMKbFT8CwokJP8OZwpIXP8O1QyQ/Nm4tP3EvGT/CmSkkP8O3NRM/FcOzFD9xu2gGhnG8UnG9dHG+YmgBaAJLAIVxv2gIh3HAUnHBKEsBSyCFccJoD4loBFijAAAAw4ocFT/CrMKPCj/Co3YNP8OGRw4/aGoVP3jChhk/w55HHD/DuMKkJD82w6ADPybDryE/w5ZqCz93w60nP8KlPBY/wpcFDT/DmcKFCT8EwpYWP8KlChU/b8K7GD/Cqx4WP8K5w7wUP0vDjRg/w54ZCj/CsMK2Cj8Kcxs/w708Dz8wwpkWPxlbFz9pwogSP8OoNhA/wpw+Mz9Uwo8YP8KOwpEJP3HDaAaGccRSccV0ccZiaAFoAksAhXHHaAiHcchScckoSwFLIIVxymgPiWgEWKIAAADDrMKbHj8ew6sQP20bLT/Ch8K0Lj9XMyE/wq7DlhQ/AcOKFj/Cp8KsBT/CiUgHP8O0AR4/wrzDrB8/wpXDtBQ/T8KjBj8jwrIkPxzDrRI/wrURDj8VSxc/UsOPJT9xwrQgPysXED/Dp3MnP0zDuAw/NRgcP8KGwqQhP8K5w7MiP8O5w4wWP8K5ZTE/JDoYP8KkPiI/EAgOPylHJj/DvsOCIz9xy2gGhnHMUnHNdHHOYmgBaAJLAIVxz2gIh3HQUnHRKEsBSxCFcdJoD4loBFhOAAAAwr7Dvw4/w7MeHT9bw4oYP2zCvg4/w5crEj/DuyYlP25YGj8TFw0/U8OGCj/Ck8OuCj93TSE/wqo4KT8BTw8/w6QeBT/Dn04PP8KaXRs/cdNoBoZx1FJx1XRx1mJoAWgCSwCFcddoCIdx2FJx2ShLAUsQhXHaaA+JaARYUwAAAEnDihQ/BMOQHz/Dnk8cP8KBRhI/w4EiKD97DA4/w4XCmxE/FsOPHT9Lw6gjP8OWHBs/w7LDow0/RU0QPwvDoic/wrzDmRE/w4TCsCE/w5LClBc/cdtoBoZx3FJx3XRx3mJoAWgCSwCFcd9oCIdx4FJx4ShLAUsQhXHiaA+JaARYTQAAABjCiBY/NcOrFz8nJw4/PWQUP8Kfw6gSP8KvwpgfP8KeFxw/VSMcP2UcFz/DvsKzGz/DoBQbPwjDnhs/XWgaP8OvABI/DFwcP1PCiyQ/ceNoBoZx5FJx5XRx5mJoAWgCSwCFcedoCIdx6FJx6ShLAUsQhXHqaA+JaARYUgAAAMO9w49dP8Okw4BlPylTdj/ChsKYSD/DvBduP8KbAFs/VGjChT/DgMKWXT9hwrRBP8KNd14/w4k5dD/CtMO/dj9rw5xPP3sgVT84Olk/w5kQYD9x62gGhnHsUnHtdHHuYmgBaAJLAIVx72gIh3HwUnHxKEsBSxCFcfJoD4loBFhNAAAAw6Rxbj/CjAJMPzB8UD8dOV8/OsKmXD8QQns/LsKfTD/CmsOZPz9cwp1eP8KFAEo/H8KzYD/Ck1JfP1rDh2M/w45NfT/DgANfP3RfST9x82gGhnH0UnH1dHH2YmgBaAJLAIVx92gIh3H4UnH5KEsBSwOFcfpoD4loBFgMAAAAAAAAAAAAAAAAAAAAcftoBoZx/FJx/XRx/mJlh3H/Lg==';

describe('global directions parity (fixture generator + CLIP)', () => {
  let G: GeneratorWeights;
  let clip: ClipEncoder;
  let stats: StyleStats;
  let dt: Float32Array;
  let tmp: string;

  before(async () => {
    G = loadGenerator(`${fx}stylegan2/generator.pt`);
    clip = new ClipEncoder(loadClip(`${fx}clip/clip.pt`));
    ({ stats } = await sampleStyleStats(G, { samples: 200, batch: 64 }));
    dt = await clip.textDirection('smiling face', 'face');
    tmp = mkdtempSync(join(tmpdir(), 'styleclip-global-'));
  });
  after(async () => {
    rmSync(tmp, { recursive: true, force: true });
    await clip.release();
  });

  it('fs3 layout: the non-toRGB layers in order, 240 rows', () => {
    const L = fs3Layout(G.config);
    assert.deepEqual(L.layers, [0, 2, 3, 5, 6, 8, 9, 11, 12]);
    assert.equal(L.totalRows, 240);
    assert.deepEqual(selectLayers(G.config, 'upto128'), L.layers); // a 64² generator has nothing above 128²
    // FFHQ config-f 1024: 6048 rows, 5376 with the official shortcut (layer index <= 16).
    const ffhq = randomGeneratorWeights({ size: 1024, nMlp: 1, styleDim: 8 }).config;
    assert.equal(fs3Rows(ffhq, 'all'), 6048);
    assert.equal(fs3Rows(ffhq, 'upto128'), 5376);
    assert.equal(Math.max(...selectLayers(ffhq, 'upto128')), 15);
  });

  it('channel statistics: every code_mean_NN and code_std_NN (N = 200, RandomState(5), ψ 0.7 on 8 rows)', () => {
    G.config.styleDims.forEach((_, i) => {
      assertClose(stats.mean[i], f32(`global/code_mean_${nn(i)}.npy`), { what: `code_mean_${nn(i)}` });
      assertClose(stats.std[i], f32(`global/code_std_${nn(i)}.npy`), { what: `code_std_${nn(i)}` });
    });
  });

  it('Δt (GetDt, 79 templates)', () => {
    assertClose(dt, f32('global/dt.npy'), { what: 'dt' });
  });

  it('every boundary_NN and num_channels (β 0.15)', () => {
    const fs3 = loadFs3(`${fx}global/fs3.npy`, G.config, clip.embedDim);
    const b = globalBoundary(fs3.data, dt, stats.std, G.config, 0.15);
    assert.equal(b.numChannels, (readNpy(`${fx}global/num_channels.npy`).data as Int32Array)[0]);
    G.config.styleDims.forEach((_, i) => {
      assertClose(b.delta[i], f32(`global/boundary_${nn(i)}.npy`), { what: `boundary_${nn(i)}` });
    });
    // Nothing reaches β: no NaN (the official code divides by zero), zero channels, zero Δs.
    const none = globalBoundary(fs3.data, dt, stats.std, G.config, 0.99);
    assert.equal(none.numChannels, 0);
    assert.ok(none.delta.every((d) => d.every((v) => v === 0)));
  });

  it('the editor keeps the most recently used text directions, up to DIRECTION_CACHE_SIZE', async () => {
    let calls = 0;
    const stub = {
      embedDim: clip.embedDim,
      textDirection: async () => {
        calls++;
        return new Float32Array(clip.embedDim);
      },
    } as unknown as ClipEncoder;
    const fs3 = loadFs3(`${fx}global/fs3.npy`, G.config, clip.embedDim);
    const editor = new GlobalEditor(G, stub, fs3.data, stats);
    for (let i = 0; i < DIRECTION_CACHE_SIZE; i++) await editor.direction(`t${i}`, 'face');
    await editor.direction('t0', 'face'); // used again: now the most recent
    await editor.direction('new', 'face'); // evicts t1, the least recently used
    assert.equal(calls, DIRECTION_CACHE_SIZE + 1);
    await editor.direction('t0', 'face');
    assert.equal(calls, DIRECTION_CACHE_SIZE + 1, 't0 was kept');
    await editor.direction('t1', 'face');
    assert.equal(calls, DIRECTION_CACHE_SIZE + 2, 't1 was evicted');
  });

  it('img_edited: the styles of img_trunc moved by α = 4 and rendered', async () => {
    const fs3 = loadFs3(`${fx}global/fs3.npy`, G.config, clip.embedDim);
    const editor = new GlobalEditor(G, clip, fs3.data, stats);
    const b = editor.boundary(await editor.direction('smiling face', 'face'), 0.15);
    const wplus = f32('stylegan2/wplus_trunc.npy');
    const styles = await stylesFromWplus(G, wplus, 2);
    const moved = applyBoundary(
      styles.map((s, i) => s.subarray(0, G.config.styleDims[i])),
      b.delta,
      [4],
    );
    const one = await renderStyles(G, moved, 1);
    const both = await editor.render(
      styles.map((s, i) => s.subarray(G.config.styleDims[i])),
      b,
      [4],
    );
    const ref = f32('global/img_edited.npy');
    const n = one.length;
    assertClose(one, ref.subarray(0, n), { what: 'img_edited[0]' });
    assertClose(both, ref.subarray(n), { what: 'img_edited[1]' });
  });

  it('fs3 precompute (K = 4) matches fs3_computed.npy, also when interrupted and resumed', async () => {
    const dir = join(tmp, 'fs3.npy.partial');
    let batches = 0;
    await assert.rejects(
      precomputeFs3(G, clip, {
        images: 4,
        statsSamples: 200,
        checkpointDir: dir,
        checkpointEvery: 0,
        shouldStop: () => ++batches > 25, // mid-way through layer 3
      }),
      (e: unknown) => e instanceof Fs3Interrupted && e.channelsDone > 0,
    );
    // Another setting cannot reuse this checkpoint.
    await assert.rejects(
      precomputeFs3(G, clip, { images: 3, statsSamples: 200, checkpointDir: dir }),
      Fs3CheckpointMismatch,
    );
    const r = await precomputeFs3(G, clip, { images: 4, statsSamples: 200, checkpointDir: dir });
    assert.equal(r.rows, 240);
    assert.ok(
      r.resumedRenders > 0 && r.resumedRenders < r.renders,
      `resumed ${r.resumedRenders} of ${r.renders}`,
    );
    const ref = f32('global/fs3_computed.npy');
    assertClose(r.fs3, ref, { rtol: 0, atol: 2e-2, what: 'fs3_computed' });
  });

  it('GetFs: unit rows, sign follows +α minus −α', () => {
    const e = 3;
    // K = 2 images; −α along x, +α along y on both → direction (−1, 1, 0)/√2.
    const feats = Float32Array.from([2, 0, 0, 0, 3, 0, 1, 0, 0, 0, 1, 0]);
    const out = new Float32Array(e);
    getFs(feats, 2, e, out, 0);
    assertClose(out, [-Math.SQRT1_2, Math.SQRT1_2, 0], { what: 'GetFs' });
  });

  it("renders go to the CLIP's own resolution: a 64² render to a 64² CLIP is only quantized and normalized", () => {
    const img = Float32Array.from({ length: 2 * 3 * 64 * 64 }, (_, i) => Math.sin(i * 0.01));
    const x = renderToClipInput(img, 1, 64, 64);
    assert.equal(x.length, 3 * 64 * 64);
    const i = 5 * 64 + 7; // pixel (5, 7) of channel 1 of image 1
    const byte = Math.trunc(Math.fround(Math.fround(img[3 * 4096 + 4096 + i] + 1) * 127.5));
    assertClose([x[4096 + i]], [(byte / 255 - 0.4578275) / 0.26130258], { rtol: 1e-5, what: 'normalized' });
    assert.equal(renderToClipInput(img, 1, 64).length, 3 * 224 * 224);
  });

  describe('loaders', () => {
    it('fs3: float16, the 1024 shortcut layout (missing layers zero), clear errors', () => {
      const full = readNpyF32(`${fx}global/fs3.npy`);
      const rows = 32 + 64 + 64; // layers 0, 2, 3, 5, 6: a prefix of the non-toRGB layers
      const half = new Uint16Array(rows * 64);
      for (let i = 0; i < half.length; i++) half[i] = float32ToHalf(full.data[i]);
      const file = join(tmp, 'fs3_f16.npy');
      writeNpy(file, { dtype: 'float16', shape: [rows, 64], data: half });
      const f = loadFs3(file, G.config, 64);
      assert.equal(f.rows, rows);
      assert.deepEqual(f.layers, [0, 2, 3, 5, 6]);
      assert.equal(f.data.length, 240 * 64);
      assertClose(f.data.subarray(0, rows * 64), full.data.subarray(0, rows * 64), {
        rtol: 1e-3,
        what: 'f16',
      });
      assert.ok(f.data.subarray(rows * 64).every((v) => v === 0));
      const bad = join(tmp, 'fs3_bad.npy');
      writeNpy(bad, { dtype: 'float32', shape: [100, 64], data: new Float32Array(6400) });
      assert.throws(() => loadFs3(bad, G.config, 64), /240 rows.*100 rows/s);
      assert.throws(() => loadFs3(`${fx}global/fs3.npy`, G.config, 512), /CLIP embedding size 512/);
    });

    it("StyleCLIP's S_mean_std pickle ([m, std] and [_, m, std]) and our stats .npy", () => {
      for (const b64 of [S_MEAN_STD_P4, S_MEAN_STD_P2]) {
        const file = join(tmp, 'S_mean_std');
        writeFileSync(file, Buffer.from(b64, 'base64'));
        const s = loadStyleStats(file, G.config);
        G.config.styleDims.forEach((_, i) => {
          assert.deepEqual(s.mean[i], f32(`global/code_mean_${nn(i)}.npy`));
          assert.deepEqual(s.std[i], f32(`global/code_std_${nn(i)}.npy`));
        });
      }
      const file = join(tmp, 'stats.npy');
      saveStyleStats(file, stats);
      const back = loadStyleStats(file, G.config);
      assert.deepEqual(back.std, stats.std);
      assert.deepEqual(back.mean, stats.mean);
    });
  });
});
