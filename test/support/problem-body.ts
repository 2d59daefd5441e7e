/** A problem+json answer's body as DESIGN §2 shapes it. */
export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: Array<{ in: string; pointer: string; message: string }>;
  run_id?: string;
}
